"""Credentials and signatures: API keys, signed requests, per-job tokens, webhook signing, URL rules.

- Jobs API: bearer API keys, compared in constant time.
- Queue → dispatch (dev): ``X-Gpuq-Task-Signature`` = HMAC over timestamp and body, by our queue client.
- Control plane ↔ agent: HMAC-SHA256 over method, path, timestamp, nonce and body hash; a
  5-minute window; nonces remembered for that window so a replay is refused.
- Agent → control plane reports: a token scoped to one job and one attempt, so a box holds no
  credential for other jobs, and a late report from an old attempt cannot authenticate.
- Callbacks: Standard Webhooks (``webhook-id``, ``webhook-timestamp``, ``webhook-signature``).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import ipaddress
import secrets
import socket
import threading
import time
from collections import OrderedDict
from collections.abc import Mapping
from typing import Protocol
from urllib.parse import urlsplit

from shared.errors import Unauthorized, ValidationFailed

__all__ = [
    "HeaderSource",
    "NonceCache",
    "RequestSigner",
    "authenticate_api_key",
    "check_callback_url",
    "derive_agent_secret",
    "hash_key",
    "job_token",
    "printable",
    "sign_task",
    "sign_webhook",
    "verify_bearer",
    "verify_job_token",
    "verify_task",
    "verify_webhook",
]

SIGNATURE_WINDOW_S = 300.0


class HeaderSource(Protocol):
    """Request headers as werkzeug, aiohttp and plain dicts all offer them (look-up by exact name)."""

    def get(self, key: str, /) -> str | None: ...


def derive_agent_secret(master: str, instance_id: str) -> str:
    """The one secret a box holds: it signs for that box only, so a rented machine's owner who reads it
    cannot speak for the control plane to any other box."""
    return _b64(_hmac(master.encode(), f"agent:{instance_id}".encode()))


_CONTROL = dict.fromkeys([*range(0, 32), 127], "?")


def printable(text: str, limit: int = 200) -> str:
    """Text from outside made safe for a log line or a header: no control characters, bounded length."""
    return text.translate(_CONTROL)[:limit]


def _hmac(key: bytes, message: bytes) -> bytes:
    return hmac.new(key, message, hashlib.sha256).digest()


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def bearer(headers: HeaderSource) -> str:
    value = headers.get("Authorization") or headers.get("authorization") or ""
    scheme, _, token = value.partition(" ")
    return token.strip() if scheme.lower() == "bearer" else ""


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def authenticate_api_key(headers: HeaderSource, keys: Mapping[str, str]) -> str:
    """Return the key's name, or raise :class:`Unauthorized`. ``keys`` maps sha256 hex → name;
    every entry is compared in constant time."""
    presented = bearer(headers)
    if not presented:
        raise Unauthorized("missing API key: send 'Authorization: Bearer <key>'", code="missing_api_key")
    digest = hash_key(presented).encode()
    found = ""
    for key_hash, name in keys.items():
        if hmac.compare_digest(digest, key_hash.encode()):
            found = name
    if not found:
        raise Unauthorized("invalid API key", code="invalid_api_key")
    return found


def verify_bearer(headers: HeaderSource, expected: str, *, what: str) -> None:
    presented = bearer(headers)
    if not expected or not presented or not hmac.compare_digest(presented.encode(), expected.encode()):
        raise Unauthorized(f"missing or invalid {what}", code="unauthorized")


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


# --- Standard Webhooks ---------------------------------------------------------------------------
def _webhook_key(secret: str) -> bytes:
    return base64.b64decode(secret.removeprefix("whsec_"))


def sign_webhook(secret: str, msg_id: str, timestamp: int, body: bytes) -> dict[str, str]:
    signed = f"{msg_id}.{timestamp}.".encode() + body
    sig = base64.b64encode(_hmac(_webhook_key(secret), signed)).decode()
    return {"webhook-id": msg_id, "webhook-timestamp": str(timestamp), "webhook-signature": f"v1,{sig}"}


def verify_webhook(secret: str, headers: HeaderSource, body: bytes, *, now: float | None = None) -> None:
    """What a receiver does (used by our demo receiver and tests)."""
    msg_id, ts = headers.get("webhook-id") or "", headers.get("webhook-timestamp") or ""
    if not msg_id or not ts.isdigit():
        raise Unauthorized("missing webhook headers")
    if abs((now if now is not None else time.time()) - int(ts)) > SIGNATURE_WINDOW_S:
        raise Unauthorized("webhook timestamp outside the window")
    expected = sign_webhook(secret, msg_id, int(ts), body)["webhook-signature"].split(",", 1)[1]
    for candidate in (headers.get("webhook-signature") or "").split():
        version, _, sig = candidate.partition(",")
        if version == "v1" and hmac.compare_digest(sig, expected):
            return
    raise Unauthorized("bad webhook signature")


# --- callback URL rules ----------------------------------------------------------------------------
def _forbidden(addr: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    return (
        addr.is_private
        or addr.is_loopback
        or addr.is_link_local
        or addr.is_multicast
        or addr.is_reserved
        or addr.is_unspecified
    )


def _literal_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


def check_callback_url(url: str, allow_hosts: set[str], *, resolve: bool, allow_http: bool = True) -> str | None:
    """Refuse callback targets inside our network (SSRF), unless the host is allow-listed.

    At submit time (``resolve=False``) only literal addresses are checked. At delivery time every
    address the name resolves to is checked and one of them is returned: the caller connects to that
    address (not to a second lookup), so DNS rebinding cannot slip through between check and use.
    Returns ``None`` for an allow-listed host (connect by name).
    """
    try:
        parts = urlsplit(url)
        host = (parts.hostname or "").lower()
        port = parts.port
        if not _literal_ip(host):
            host.encode("idna")  # a name DNS could carry: labels of 1-63 characters
    except (ValueError, UnicodeError):
        raise ValidationFailed("callback_url is not a valid URL", code="invalid_callback_url") from None
    if parts.scheme not in ("http", "https") or not host:
        raise ValidationFailed("callback_url must be an absolute http(s) URL", code="invalid_callback_url")
    if host in allow_hosts:
        return None
    if parts.scheme == "http" and not allow_http:
        raise ValidationFailed("callback_url must use https", code="insecure_callback_url")
    try:
        literal = ipaddress.ip_address(host)
    except ValueError:
        literal = None
    if literal is not None:
        addresses = [literal]
    elif resolve:
        try:
            infos = socket.getaddrinfo(host, port or 443, proto=socket.IPPROTO_TCP)
        except (OSError, UnicodeError, ValueError) as exc:
            raise ValidationFailed(f"callback host {host!r} does not resolve", code="invalid_callback_url") from exc
        addresses = [ipaddress.ip_address(info[4][0]) for info in infos]
    else:
        addresses = []
    if any(_forbidden(addr) for addr in addresses):
        raise ValidationFailed(
            f"callback_url host {host!r} is a private, loopback or reserved address",
            code="forbidden_callback_url",
        )
    return str(addresses[0]) if addresses else None
