"""Signed requests between our own parts: queue tasks, control plane <-> agent, per-job report tokens.

- Queue -> dispatch (dev): ``X-Gpuq-Task-Signature`` = HMAC over timestamp and body, by our queue client.
- Control plane <-> agent: HMAC-SHA256 over method, path, timestamp, nonce and body hash; a
  5-minute window; nonces remembered for that window so a replay is refused.
- Agent -> control plane reports: a token scoped to one job and one attempt, so a box holds no
  credential for other jobs, and a late report from an old attempt cannot authenticate.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
import threading
import time
from collections import OrderedDict

from shared.errors import Unauthorized
from shared.security.headers import HeaderSource

__all__ = [
    "SIGNATURE_WINDOW_S",
    "TASK_SIGNATURE_HEADER",
    "NonceCache",
    "RequestSigner",
    "agent_signer",
    "derive_agent_secret",
    "job_token",
    "sign_task",
    "verify_job_token",
    "verify_task",
]

SIGNATURE_WINDOW_S = 300.0


def derive_agent_secret(master: str, instance_id: str) -> str:
    """The one secret a box holds: it signs for that box only, so a rented machine's owner who reads it
    cannot speak for the control plane to any other box."""
    return _b64(_hmac(master.encode(), f"agent:{instance_id}".encode()))


def _hmac(key: bytes, message: bytes) -> bytes:
    return hmac.new(key, message, hashlib.sha256).digest()


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


# --- queue tasks (dev-mode auth of dispatch) ----------------------------------------------------
TASK_SIGNATURE_HEADER = "X-Gpuq-Task-Signature"


def sign_task(secret: str, body: bytes, *, now: float | None = None) -> str:
    ts = str(int(now if now is not None else time.time()))
    return f"t={ts},v1={_b64(_hmac(secret.encode(), ts.encode() + b'.' + body))}"


def verify_task(secret: str, header: str, body: bytes) -> None:
    """Tasks are redelivered for hours, so the timestamp is not windowed; the body is the content."""
    fields = dict(part.split("=", 1) for part in header.split(",") if "=" in part)
    ts, sig = fields.get("t", ""), fields.get("v1", "")
    expected = _b64(_hmac(secret.encode(), ts.encode() + b"." + body))
    if not secret or not sig or not hmac.compare_digest(sig, expected):
        raise Unauthorized("dispatch requires a valid task signature", code="invalid_task_signature")


# --- control plane <-> agent -------------------------------------------------------------------
class NonceCache:
    """Nonces seen within the signature window; a second sighting is a replay."""

    def __init__(self, window_s: float = SIGNATURE_WINDOW_S, max_entries: int = 100_000) -> None:
        self._seen: OrderedDict[str, float] = OrderedDict()
        self._window_s = window_s
        self._max = max_entries
        self._lock = threading.Lock()

    def check_and_add(self, nonce: str, now: float) -> bool:
        with self._lock:
            while self._seen:
                oldest, at = next(iter(self._seen.items()))
                if now - at <= self._window_s and len(self._seen) < self._max:
                    break
                del self._seen[oldest]
            if nonce in self._seen:
                return False
            self._seen[nonce] = now
            return True


class RequestSigner:
    """HMAC-SHA256 over method, path, timestamp, nonce and body hash."""

    HEADERS = ("X-Gpuq-Timestamp", "X-Gpuq-Nonce", "X-Gpuq-Signature")

    def __init__(self, secret: str, *, nonces: NonceCache | None = None) -> None:
        if not secret:
            raise ValueError("a signing secret is required")
        self._key = secret.encode()
        self._nonces = nonces or NonceCache()

    def _mac(self, method: str, path: str, ts: str, nonce: str, body: bytes) -> str:
        digest = hashlib.sha256(body).hexdigest()
        message = "\n".join((method.upper(), path, ts, nonce, digest)).encode()
        return _b64(_hmac(self._key, message))

    def sign(self, method: str, path: str, body: bytes, *, now: float | None = None) -> dict[str, str]:
        ts = str(int(now if now is not None else time.time()))
        nonce = secrets.token_urlsafe(12)
        return {
            "X-Gpuq-Timestamp": ts,
            "X-Gpuq-Nonce": nonce,
            "X-Gpuq-Signature": self._mac(method, path, ts, nonce, body),
        }

    def verify(self, method: str, path: str, headers: HeaderSource, body: bytes, *, now: float | None = None) -> None:
        now = now if now is not None else time.time()
        ts, nonce, sig = (headers.get(h) or "" for h in self.HEADERS)
        if not (ts and nonce and sig):
            raise Unauthorized("unsigned request", code="missing_signature")
        if not hmac.compare_digest(sig, self._mac(method, path, ts, nonce, body)):
            raise Unauthorized("bad signature", code="invalid_signature")
        try:
            skew = abs(now - int(ts))
        except ValueError:
            raise Unauthorized("bad timestamp", code="invalid_signature") from None
        if skew > SIGNATURE_WINDOW_S:
            raise Unauthorized("signature timestamp outside the 5-minute window", code="expired_signature")
        if not self._nonces.check_and_add(nonce, now):
            raise Unauthorized("replayed request", code="replayed_request")


def agent_signer(master_secret: str, instance_id: str, nonces: NonceCache) -> RequestSigner:
    """Signs and verifies the traffic of one box, with that box's own secret."""
    return RequestSigner(derive_agent_secret(master_secret, instance_id), nonces=nonces)


# --- per-job report tokens ---------------------------------------------------------------------
def job_token(secret: str, job_id: str, attempt: int) -> str:
    mac = _b64(_hmac(secret.encode(), f"job:{job_id}:{attempt}".encode()))
    return f"{attempt}.{mac}"


def verify_job_token(secret: str, job_id: str, token: str) -> int:
    """Return the attempt the token is scoped to, or raise :class:`Unauthorized`."""
    attempt_text, _, _ = token.partition(".")
    if not secret or not attempt_text.isdigit():
        raise Unauthorized("invalid job token", code="invalid_job_token")
    attempt = int(attempt_text)
    if not hmac.compare_digest(token, job_token(secret, job_id, attempt)):
        raise Unauthorized("invalid job token", code="invalid_job_token")
    return attempt
