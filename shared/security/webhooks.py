"""Callbacks signed the Standard Webhooks way (``webhook-id``, ``webhook-timestamp``, ``webhook-signature``)."""

from __future__ import annotations

import base64
import hashlib
import hmac
import time

from shared.errors import Unauthorized
from shared.security.headers import HeaderSource
from shared.security.signing import SIGNATURE_WINDOW_S

__all__ = ["sign_webhook", "verify_webhook"]


def _hmac(key: bytes, message: bytes) -> bytes:
    return hmac.new(key, message, hashlib.sha256).digest()


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
