"""Before an idle box stops itself it asks the control plane (the trigger function, signed with the box's
own secret): the pool may need it to stay up (``min_boxes``), or a job may have just been routed to it.
Granted, the box is draining there (no new job comes) and stops; refused, it stays up for another idle
period. A control plane that cannot be asked never keeps a box billing: the box stops."""

from __future__ import annotations

import json
import logging

import aiohttp

from agent.box_events import post_box_event
from shared.settings import AgentSettings

__all__ = ["ask_to_stop"]

log = logging.getLogger("gpuq.agent.drain")

TRIES = 3


async def ask_to_stop(settings: AgentSettings, http: aiohttp.ClientSession) -> bool:
    """True when this box may stop now."""
    if not settings.ready_url:
        return True
    answer = await post_box_event(settings, http, "drain", {}, tries=TRIES, settled=lambda status: status < 500)
    if answer is None:
        log.warning("control plane not reachable after %d tries: stopping anyway", TRIES)
        return True
    status, text = answer
    if status != 200:
        log.warning("stop request answered %d: %s", status, text[:200])
        return True
    try:
        reply = json.loads(text)
    except ValueError:
        log.warning("stop request answered with no JSON: stopping anyway")
        return True
    granted = bool(reply.get("drain", True))
    log.info("asked to stop: %s (%s)", "granted" if granted else "stay up", reply.get("reason"))
    return granted
