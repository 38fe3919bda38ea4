"""The gpuq error tree.

Every error the core raises on purpose derives from :class:`GpuqError` and carries a stable
``code`` (machine-readable, part of the public API) and the HTTP ``status`` the edge maps it to.
The tree is split by who must act::

    GpuqError
    ├── ClientError                 the caller must change the request (4xx)
    │   ├── InvalidRequest          400 malformed body, wrong content type, bad JSON
    │   ├── ValidationFailed        422 well-formed but not acceptable (unknown field, bad value)
    │   ├── Unauthorized            401 missing or wrong credential
    │   ├── Forbidden               403 credential valid but not for this action
    │   ├── NotFound                404 unknown job
    │   ├── MethodNotAllowed        405 known path, other method (carries ``allow``)
    │   ├── Conflict                409 idempotency key reused with another body; wrong state
    │   ├── PayloadTooLarge         413 body over the limit
    │   ├── UnsupportedMediaType    415 body is not application/json
    │   └── RateLimited             429 too many requests (carries ``retry_after_s``)
    ├── TryLater                    not an error of anyone: retry after ``delay_s`` (dispatch snoozes)
    ├── InstanceNotFound            404 the provider has no such instance (handled inside the provider)
    ├── ApiError                    the jobs API's error answer, as its clients see it (status and code)
    ├── StaleWrite                  a conditional write lost a race (compare-and-set refused)
    │   └── InvalidTransition       the job's state machine forbids the move
    └── ServiceError                a dependency failed: the operator must act or wait (5xx)
        ├── OllamaError             502 the model server on the box failed a job (``code`` says how)
        │   ├── ModelServerUnreachable  502 no connection to it, or it went away mid-answer
        │   ├── StreamFailed        502 it answered, but not with a stream (carries its ``status`` and ``body``)
        │   └── ModelServerError    502 the stream said something went wrong (error line, no final line, bad JSON)
        ├── QueueUnavailable        503 Cloud Tasks refused or is unreachable
        ├── ProviderError           502 the compute provider's API failed
        │   ├── VastAuthError       502 bad or revoked Vast key (401/403, or 404 + auth_error)
        │   ├── VastRateLimited     502 Vast still answers 429 after the retry policy
        │   ├── VastUnavailable     502 Vast 5xx / timeouts after the retry policy
        │   ├── VastRejected        502 any other Vast 4xx (the message says why; carries ``status_code``)
        │   ├── VastCreateUncertain 502 a create whose answer was lost (it may have run)
        │   └── NoCapacity          502 no offer matches (any provider; or ``instance_restart_failed``)
        ├── AgentUnreachable        502 the agent on the box did not answer
        └── DeployError             502 a step of `gpuq deploy` failed

Only the HTTP edge (``functions/edge.py``, ``agent/app.py``) turns these into responses.
"""

from __future__ import annotations

from typing import Any

__all__ = [
    "AgentUnreachable",
    "ApiError",
    "ClientError",
    "Conflict",
    "DeployError",
    "Forbidden",
    "GpuqError",
    "InstanceNotFound",
    "InvalidRequest",
    "InvalidTransition",
    "MethodNotAllowed",
    "ModelServerError",
    "ModelServerUnreachable",
    "NoCapacity",
    "NotFound",
    "OllamaError",
    "PayloadTooLarge",
    "ProviderError",
    "QueueUnavailable",
    "RateLimited",
    "ServiceError",
    "StaleWrite",
    "StreamFailed",
    "TryLater",
    "Unauthorized",
    "UnsupportedMediaType",
    "ValidationFailed",
    "VastAuthError",
    "VastCreateUncertain",
    "VastRateLimited",
    "VastRejected",
    "VastUnavailable",
    "error_type",
]


class GpuqError(Exception):
    """Base of every error gpuq raises on purpose."""

    code: str = "internal"
    status: int = 500

    param: str | None = None  # the request parameter at fault, when one is (OpenAI's ``param``)

    def __init__(self, message: str, *, code: str | None = None, param: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = code
        if param is not None:
            self.param = param

    def to_body(self) -> dict[str, dict[str, str]]:
        """The JSON error body every endpoint returns."""
        return {"error": {"code": self.code, "message": self.message}}

    def to_api_body(self) -> dict[str, dict[str, str | None]]:
        """The control plane's error body: gpuq's ``code`` and ``message``, and OpenAI's ``type`` and
        ``param`` beside them, so OpenAI's SDKs raise their typed errors on every route."""
        return {
            "error": {"code": self.code, "message": self.message, "type": error_type(self.status), "param": self.param}
        }


def error_type(status: int) -> str:
    """OpenAI's error ``type`` for an HTTP status."""
    if status == 401:
        return "authentication_error"
    if status == 403:
        return "permission_error"
    if status == 429:
        return "rate_limit_error"
    return "server_error" if status >= 500 else "invalid_request_error"


class ClientError(GpuqError):
    code = "bad_request"
    status = 400


class InvalidRequest(ClientError):
    code = "invalid_request"
    status = 400


class ValidationFailed(ClientError):
    code = "validation_failed"
    status = 422


class Unauthorized(ClientError):
    code = "unauthorized"
    status = 401


class Forbidden(ClientError):
    code = "forbidden"
    status = 403


class NotFound(ClientError):
    code = "not_found"
    status = 404


class Conflict(ClientError):
    code = "conflict"
    status = 409


class PayloadTooLarge(ClientError):
    code = "payload_too_large"
    status = 413


class RateLimited(ClientError):
    code = "rate_limited"
    status = 429

    def __init__(self, message: str, *, retry_after_s: float) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s


class TryLater(GpuqError):
    """Not ready yet: ask again after ``delay_s`` seconds (like arq's ``Retry(defer=...)``)."""

    code = "try_later"
    status = 503

    def __init__(self, message: str, *, delay_s: float, reason: str) -> None:
        super().__init__(message)
        self.delay_s = delay_s
        self.reason = reason


class StaleWrite(GpuqError):
    """A conditional write found the record changed since it was read."""

    code = "stale_write"
    status = 409


class InvalidTransition(StaleWrite):
    code = "invalid_transition"
    status = 409


class ServiceError(GpuqError):
    code = "service_unavailable"
    status = 503


class QueueUnavailable(ServiceError):
    code = "queue_unavailable"
    status = 503


class ProviderError(ServiceError):
    code = "provider_error"
    status = 502


class VastAuthError(ProviderError):
    """The operator must fix the key: retrying cannot help."""

    code = "provider_auth_error"
    status = 502


class VastRateLimited(ProviderError):
    code = "provider_rate_limited"
    status = 502


class VastUnavailable(ProviderError):
    code = "provider_unavailable"
    status = 502


class VastRejected(ProviderError):
    """Vast refused the request (a 4xx other than auth); ``status_code`` and ``error`` are Vast's."""

    code = "provider_rejected"
    status = 502

    def __init__(self, message: str, *, status_code: int, error: str = "", code: str | None = None) -> None:
        super().__init__(message, code=code)
        self.status_code = status_code
        self.error = error


class VastCreateUncertain(ProviderError):
    """A create was sent and its answer lost: it may have run, so it is reconciled, never resent."""

    code = "provider_create_uncertain"
    status = 502


class NoCapacity(ProviderError):
    """No offer matches what the box needs (``code`` ``instance_restart_failed`` for a replacement)."""

    code = "no_capacity"
    status = 502


class AgentUnreachable(ServiceError):
    code = "agent_unreachable"
    status = 502


class ApiError(GpuqError):
    """An error answer of the jobs API as a client sees it (the CLI, the demo, tests): the answer's
    HTTP ``status`` and its body's ``code`` (``None`` when the body had none)."""

    def __init__(self, status: int, body: Any) -> None:
        error = body.get("error", {}) if isinstance(body, dict) else {}
        super().__init__(f"{status} {error.get('code', '')}: {error.get('message', body)}")
        self.status = status
        self.code: str | None = error.get("code")  # type: ignore[assignment]  # the server's, maybe none


class InstanceNotFound(GpuqError):
    """The provider has no such instance (any more). A signal to the provider's own code, which treats
    the box as gone; deliberately not a :class:`ProviderError`, so no generic handler swallows it."""

    code = "instance_not_found"
    status = 404


class DeployError(ServiceError):
    """A ``gcloud`` step of ``gpuq deploy`` failed; the message names the step, never a secret."""

    code = "deploy_failed"
    status = 502


class MethodNotAllowed(ClientError):
    code = "method_not_allowed"
    status = 405

    def __init__(self, message: str, *, allow: list[str]) -> None:
        super().__init__(message)
        self.allow = allow


class UnsupportedMediaType(ClientError):
    code = "unsupported_media_type"
    status = 415


class OllamaError(ServiceError):
    """The model server on the box (Ollama or a stand-in) failed a job; ``code`` says how
    (``model_not_found``, ``model_server_busy``, ``model_server_unreachable``, ...)."""

    code = "model_server_error"
    status = 502


class ModelServerUnreachable(OllamaError):
    """No connection to the model server, or it went away mid-answer."""

    code = "model_server_unreachable"
    status = 502


class StreamFailed(OllamaError):
    """The model server answered, but not with a stream.

    Here ``status`` is the model server's own status (with its ``body``), not one an edge answers with:
    ``agent/ollama.py`` turns the pair into the job's error before anything else sees it.
    """

    code = "stream_failed"
    status = 502

    def __init__(self, status: int, body: bytes) -> None:
        super().__init__(f"HTTP {status}")
        self.status = status
        self.body = body


class ModelServerError(OllamaError):
    """The stream itself said something went wrong (an ``error`` line, no final line, bad JSON)."""

    code = "model_server_error"
    status = 502
