"""The published contracts: OpenAPI 3.1 documents for the public jobs API and for the agent's API,
generated from the pydantic models the code validates with. ``docs/openapi.json`` and
``docs/agent-openapi.json`` are these documents; a test fails when they drift from the code.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from typing import Any

from pydantic import BaseModel, Field
from pydantic.json_schema import models_json_schema

from shared.jobs.events import AgentJob, AgentJobAccepted, Report, ReportAck, ReportBatch, ReportBatchAck
from shared.jobs.routes import JOB_ID, ROUTES, Operation, Reply, Route
from shared.models import CallbackEvent, JobCreate, JobError, JobResult
from shared.states import JobStatus

__all__ = [
    "AgentHealth",
    "CallbackView",
    "DeliveryView",
    "ErrorBody",
    "ErrorDetail",
    "JobView",
    "ModelServerHealth",
    "Resent",
    "SeedJob",
    "agent_openapi",
    "dumps",
    "jobs_openapi",
]

REF = "#/components/schemas/{model}"


class ErrorDetail(BaseModel):
    code: str = Field(description="Stable machine-readable code, e.g. `invalid_api_key`, `job_not_found`.")
    message: str = Field(description="What is wrong, for a person.")


class ErrorBody(BaseModel):
    """Every 4xx/5xx answer."""

    error: ErrorDetail


class DeliveryView(BaseModel):
    event_id: str
    type: str
    try_number: int
    at: str | None
    status_code: int | None
    error: str | None
    outcome: str


class CallbackView(BaseModel):
    delivered: list[str]
    failed: list[str]
    deliveries: list[DeliveryView]


class JobView(BaseModel):
    """A job as clients see it (``Job.public()``)."""

    model_config = {"protected_namespaces": ()}

    id: str
    status: JobStatus
    status_reason: str | None = Field(description="Why it waits, or what failed.")
    model: str
    output: str | None = Field(description="Output so far (partial while running).")
    output_url: str | None = Field(description="A very large finished output: where to fetch it (presigned).")
    output_url_expires_at: str | None
    error: JobError | None
    result: JobResult | None
    attempts: int
    queued_at: str | None
    started_at: str | None
    finished_at: str | None
    instance_id: str | None
    cost_usd: float | None
    idempotency_key: str | None
    metadata: dict[str, Any] | None
    callback_url: str | None
    callback_events: list[CallbackEvent]
    callback: CallbackView


class Resent(BaseModel):
    resent: list[str]


class SeedJob(BaseModel):
    """``POST /enqueue`` (the seed design's shape), with header ``x-task-type: llm``."""

    model_config = {"extra": "forbid", "protected_namespaces": ()}

    prompt: str = Field(min_length=1, pattern=r"\S")
    model: str = Field(min_length=1, max_length=200, pattern=r"^[A-Za-z0-9][A-Za-z0-9._:/\-]*$")
    callbackUrl: str | None = Field(None, max_length=2048, pattern=r"^[Hh][Tt][Tt][Pp][Ss]?://[^\s/?#]+")


class ModelServerHealth(BaseModel):
    """The model server the agent supervises (``GPUQ_AGENT_SERVER_COMMAND``), see docs/model-server.md."""

    pid: int | None = Field(description="Its current process (none before the first start).")
    restarts: int = Field(description="Restarts after an exit, in a row.")
    last_exit: int | None = Field(description="Exit code of its last process (negative: killed by that signal).")
    tail: list[str] | None = Field(
        None, description="The last lines it printed while starting; absent once it is up (they may hold prompts)."
    )


class AgentHealth(BaseModel):
    status: str = Field(description="`ready`, `starting_instance`, `loading_model`, `instance_stopping`, …")
    running_jobs: int
    jobs_done: int
    idle_s: float
    instance_id: str
    phase: str = Field(description="`starting_server`, `loading_model`, `ready`, `stopping` or `failed`.")
    reason: str = Field(description="Why it is in that phase (`Downloading model.safetensors 43%`).")
    server: ModelServerHealth | None = Field(None, description="Only when the agent supervises its model server.")
    error: ErrorDetail | None = None


def _components(models: list[type[BaseModel]], mode: str = "validation") -> dict[str, Any]:
    _, schema = models_json_schema([(m, mode) for m in models], ref_template=REF)  # type: ignore[misc]
    return dict(schema.get("$defs", {}))


def _content(schema: str | Mapping[str, Any], media: str = "application/json") -> dict[str, Any]:
    """A media type entry: ``schema`` names a component, or is an inline JSON Schema."""
    return {media: {"schema": {"$ref": REF.format(model=schema)} if isinstance(schema, str) else dict(schema)}}


_REASONS = {
    400: "Malformed body",
    401: "Missing or invalid credential",
    404: "Unknown job, model, file or batch",
    409: "Conflict (idempotency key reused with another body, or job already finished)",
    413: "Body too large",
    415: "Not application/json",
    422: "Invalid field values",
    429: "Rate limited (see Retry-After)",
    503: "Queue unavailable, or (OpenAI routes) the job still waits: retry after Retry-After to re-attach",
    504: "The job expired waiting for a box (OpenAI routes)",
}


def _responses(op: Operation) -> dict[str, Any]:
    responses: dict[str, Any] = {}
    for reply in op.replies:
        responses[str(reply.status)] = {"description": reply.description}
        if reply.schema is not None:
            responses[str(reply.status)]["content"] = _content(reply.schema, reply.media)
    for code in op.errors:
        responses[str(code)] = {"description": _REASONS[code], "content": _content("ErrorBody")}
    return responses


def _operation(operation_id: str, op: Operation) -> dict[str, Any]:
    doc: dict[str, Any] = {"operationId": operation_id, "responses": _responses(op)}
    if op.summary is not None:
        doc["summary"] = op.summary
    if op.parameters:
        doc["parameters"] = [p.openapi() for p in op.parameters]
    if op.body is not None:
        doc["requestBody"] = {"required": True, "content": _content(op.body)}
    if not op.secured:
        doc["security"] = []
    return doc


def _paths(routes: Iterable[Route]) -> dict[str, Any]:
    """The ``paths`` object of every documented route; a route's endpoint is its ``operationId``."""
    paths: dict[str, Any] = {}
    for route in routes:
        if route.doc is not None:
            paths.setdefault(route.path, {})[route.method.lower()] = _operation(route.endpoint, route.doc)
    return paths


def jobs_openapi() -> dict[str, Any]:
    """The public jobs API's document, its ``paths`` read from the route table the router uses."""
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "gpuq jobs API",
            "version": "1",
            "description": "Submit LLM jobs; they wait for a GPU box that starts on demand.",
        },
        "components": {
            "schemas": _components([JobCreate, SeedJob, JobView, ErrorBody, Resent]),
            "securitySchemes": {
                "apiKey": {"type": "http", "scheme": "bearer", "description": "An API key from GPUQ_API_KEYS."}
            },
        },
        "security": [{"apiKey": []}],
        "paths": _paths(ROUTES),
    }


NDJSON_DOC = "NDJSON: {response} lines, then {done, status}"
_ACCEPTED = "AgentJobAccepted"

# The agent's own API (served by agent/ on the box), described with the jobs table's vocabulary.
_AGENT_ROUTES: tuple[Route, ...] = (
    Route(
        "GET",
        "/health",
        "health",
        Operation(
            replies=(Reply(200, "Ready", "AgentHealth"), Reply(503, "Not ready (why in `status`)", "AgentHealth")),
            secured=False,
        ),
    ),
    Route(
        "POST",
        "/v1/jobs",
        "acceptJob",
        Operation(
            body="AgentJob",
            replies=(
                Reply(202, "Accepted", _ACCEPTED),
                Reply(200, "Duplicate", _ACCEPTED),
                Reply(503, "Not ready, busy or stopping", "ErrorBody"),
            ),
            errors=(401, 422),
        ),
    ),
    Route(
        "POST",
        "/v1/stream",
        "streamJob",
        Operation(
            body="AgentJob",
            replies=(Reply(200, NDJSON_DOC, {"type": "string"}, "application/x-ndjson"),),
            errors=(401, 422),
        ),
    ),
    Route(
        "POST",
        "/v1/jobs/{job_id}/cancel",
        "cancelJob",
        Operation(parameters=(JOB_ID,), replies=(Reply(200, "Cancelled"),), errors=(401, 404)),
    ),
)

_SIGNED = (
    "HMAC-SHA256 over method, path, timestamp, nonce and body hash; headers "
    "X-Gpuq-Timestamp, X-Gpuq-Nonce, X-Gpuq-Signature; 5-minute window; no replay."
)
_REPORTS = (
    "The agent POSTs one ReportBatch per interval to the job's reports_url "
    "(the control plane's POST /v1/reports), an entry per job, each with the "
    "job's report_token, and gets a ReportBatchAck (an ack per entry; 401 when "
    "no entry's token is valid). A job handed over without reports_url is "
    "reported alone: a Report to its report_url with `Authorization: Bearer "
    "<report_token>`, answered by a ReportAck."
)


def agent_openapi() -> dict[str, Any]:
    """The agent's document; how the agent reports back to the control plane is told in ``x-reports``."""
    schemas = _components(
        [AgentJob, AgentJobAccepted, AgentHealth, ErrorBody, Report, ReportAck, ReportBatch, ReportBatchAck]
    )
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "gpuq agent API",
            "version": "1",
            "description": "Served by the agent on the GPU box; called only by the control plane. " + _SIGNED,
        },
        "components": {
            "schemas": schemas,
            "securitySchemes": {
                "signature": {"type": "apiKey", "in": "header", "name": "X-Gpuq-Signature", "description": _SIGNED}
            },
        },
        "security": [{"signature": []}],
        "paths": _paths(_AGENT_ROUTES),
        "x-reports": {"description": _REPORTS},
    }


def dumps(document: dict[str, Any]) -> str:
    return json.dumps(document, indent=2, sort_keys=True) + "\n"


if __name__ == "__main__":
    from pathlib import Path

    docs = Path(__file__).resolve().parents[2] / "docs"
    docs.mkdir(exist_ok=True)
    (docs / "openapi.json").write_text(dumps(jobs_openapi()))
    (docs / "agent-openapi.json").write_text(dumps(agent_openapi()))
    print(f"wrote {docs / 'openapi.json'} and {docs / 'agent-openapi.json'}")
