"""One delivery try of an event to a network sink (a task on the callback queue, run by dispatch).

A failed try schedules the next one itself, with the job callbacks' backoff (``GPUQ_CALLBACK_BACKOFF_S``
doubling to an hour, jittered) and their number of tries (``GPUQ_CALLBACK_MAX_TRIES``): at least once, for
hours. An event that exhausted its tries (or whose target is refused) is dead: logged, and announced as
``health.degraded`` about the sink (``component`` ``event_webhook`` or ``event_pubsub``; that event goes
to every other sink). Deliveries are not ordered: a receiver orders by the store's order (``GET /v1/events``)
or by ``time``, and de-duplicates on ``id``.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from shared.backoff import Backoff
from shared.observability.events import announce
from shared.observability.sinks.outcome import Delivery
from shared.observability.sinks.pubsub import publish_event
from shared.observability.sinks.task import EventTask, push_event_task
from shared.observability.sinks.webhook import post_event

if TYPE_CHECKING:
    from shared.controlplane import ControlPlane

__all__ = ["deliver_event"]

log = logging.getLogger("gpuq.events")

MAX_BACKOFF_S = 3600.0
RETRY_JITTER = (0.5, 1.0)

_SINKS: dict[str, Callable[[ControlPlane, dict[str, Any]], Delivery]] = {
    "webhook": post_event,
    "pubsub": publish_event,
}


def deliver_event(cp: ControlPlane, task: EventTask) -> str:
    """Try once; returns ``delivered``, ``retrying`` or ``failed``."""
    event = task.event
    done = _SINKS[task.sink](cp, event)
    if done.error is None:
        log.debug("event %s delivered to the %s sink (try %d)", event["id"], task.sink, task.try_number)
        return "delivered"
    s = cp.settings
    if done.final or task.try_number >= s.callback_max_tries:
        log.warning("event %s to the %s sink failed for good: %s", event["id"], task.sink, done.error)
        announce(
            cp,
            "health.degraded",
            f"event_{task.sink}",
            {
                "component": f"event_{task.sink}",
                "reason": "delivery_failed",
                "event_id": event["id"],
                "event_type": event["type"],
                "tries": task.try_number,
                "error": done.error,
            },
            source="events",
            occurrence=str(event["id"]),
        )
        return "failed"
    backoff = Backoff(first_s=s.callback_backoff_s, factor=2.0, cap_s=MAX_BACKOFF_S, jitter=RETRY_JITTER)
    delay = backoff.after_try(task.try_number)
    push_event_task(cp, EventTask.of(task.sink, event, task.try_number + 1), delay_s=delay)
    log.info("event %s to the %s sink: try %d failed (%s)", event["id"], task.sink, task.try_number, done.error)
    return "retrying"
