"""The account-level event webhook: the envelope POSTed as JSON, signed the Standard Webhooks way (as job
callbacks are, ``webhook-id`` = the event's id), to ``GPUQ_EVENT_WEBHOOK_URL``.

The target is checked like a callback URL (public addresses only, unless listed in
``GPUQ_CALLBACK_ALLOW_HOSTS``; https unless ``GPUQ_CALLBACK_ALLOW_HTTP``), and the connection goes to the
address that was checked, never following a redirect. Signed with ``GPUQ_EVENT_WEBHOOK_SECRET``, or
``GPUQ_WEBHOOK_SECRET`` when that is empty.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

import httpx

from shared.errors import ValidationFailed
from shared.observability.sinks.outcome import Delivery
from shared.security.callback_urls import check_callback_url, post_pinned
from shared.security.webhooks import sign_webhook

if TYPE_CHECKING:
    from shared.controlplane import ControlPlane

__all__ = ["post_event"]


def post_event(cp: ControlPlane, event: dict[str, Any]) -> Delivery:
    """POST the event once."""
    s = cp.settings
    url = s.event_webhook_url
    try:
        pinned = check_callback_url(url, cp.allow_hosts(), resolve=True, allow_http=s.callback_allow_http)
    except ValidationFailed as exc:
        return Delivery(f"GPUQ_EVENT_WEBHOOK_URL refused: {exc.message}", final=True)
    body = json.dumps(event, separators=(",", ":")).encode()
    secret = s.event_webhook_secret or s.webhook_secret
    headers = sign_webhook(secret, event["id"], int(cp.clock.now()), body) if secret else {}
    headers.update({"Content-Type": "application/json", "User-Agent": "gpuq-webhooks/1"})
    try:
        response = post_pinned(cp.http, url, pinned, body, headers, timeout_s=s.callback_timeout_s)
    except httpx.HTTPError as exc:
        return Delivery(f"{type(exc).__name__}: {exc}"[:300])
    if 200 <= response.status_code < 300:
        return Delivery(None)
    return Delivery(f"receiver answered {response.status_code}")
