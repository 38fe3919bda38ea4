"""Before an idle box stops itself it asks the control plane (the trigger function, signed with the box's
own secret): the pool may need it to stay up (``min_boxes``), or a job may have just been routed to it.
Granted, the box is draining there (no new job comes) and stops; refused, it stays up for another idle
period. A control plane that cannot be asked never keeps a box billing: the box stops."""

from __future__ import annotations

import asyncio
import json
import logging
from urllib.parse import urlsplit

import aiohttp

from shared.security.signing import RequestSigner
from shared.settings import AgentSettings

__all__ = ["ask_to_stop"]

log = logging.getLogger("gpuq.agent.drain")

TRIES = 3


async def ask_to_stop(settings: AgentSettings, http: aiohttp.ClientSession) -> bool:
    """True when this box may stop now."""
    if not settings.ready_url:
        return True
    body = json.dumps({"instance_id": settings.instance_id, "event": "drain"}).encode()
    signer = RequestSigner(settings.secret)
    for attempt in range(TRIES):
        headers = signer.sign("POST", urlsplit(settings.ready_url).path, body)
        headers["Content-Type"] = "application/json"
        try:
            async with http.post(
                settings.ready_url, data=body, headers=headers, timeout=aiohttp.ClientTimeout(total=10)
            ) as response:
                text = await response.text()
            if response.status == 200:
                answer = json.loads(text)
                granted = bool(answer.get("drain", True))
                log.info("asked to stop: %s (%s)", "granted" if granted else "stay up", answer.get("reason"))
                return granted
            log.warning("stop request answered %d: %s", response.status, text[:200])
            if response.status < 500:
                return True
        except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
            log.warning("stop request failed: %s", type(exc).__name__)
        await asyncio.sleep(0.5 * 2**attempt)
    log.warning("control plane not reachable after %d tries: stopping anyway", TRIES)
    return True
