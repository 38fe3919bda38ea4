"""What the box tells the control plane about itself (``ready``, ``failed``, ``drain``): one signed POST
to the trigger function's box-event URL (``GPUQ_AGENT_READY_URL``), resent with doubling delays."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Callable
from urllib.parse import urlsplit

import aiohttp

from shared.security.signing import RequestSigner
from shared.settings import AgentSettings

__all__ = ["post_box_event"]

log = logging.getLogger("gpuq.agent.box_events")


async def post_box_event(
    settings: AgentSettings,
    http: aiohttp.ClientSession,
    event: str,
    fields: dict[str, object],
    *,
    tries: int,
    settled: Callable[[int], bool],
) -> tuple[int, str] | None:
    """Send ``event`` (with ``fields``) for this box until an answer's status is ``settled``; returns that
    status and body, or ``None`` when no answer settled in ``tries`` (each other answer or failure logged).

    The caller checks ``settings.ready_url`` is set."""
    body = json.dumps({"instance_id": settings.instance_id, "event": event, **fields}).encode()
    signer = RequestSigner(settings.secret)
    for attempt in range(tries):
        headers = signer.sign("POST", urlsplit(settings.ready_url).path, body)
        headers["Content-Type"] = "application/json"
        try:
            async with http.post(
                settings.ready_url, data=body, headers=headers, timeout=aiohttp.ClientTimeout(total=10)
            ) as response:
                text = await response.text()
            if settled(response.status):
                return response.status, text
            log.warning("%s event answered %d: %s", event, response.status, text[:200])
        except (aiohttp.ClientError, TimeoutError) as exc:
            log.warning("%s event failed: %s", event, type(exc).__name__)
        await asyncio.sleep(0.5 * 2**attempt)
    return None
