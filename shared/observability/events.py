"""Events: the one envelope every state change is announced in, and :func:`announce`, its one producer.

An event is ``{"type", "id", "time", "source", "subject", "idempotency_key", "data"}`` (docs/events.md
lists every type and its data):

- ``type`` -- dot notation, one of :data:`EVENT_TYPES` (``job.started``, ``instance.ready`` …);
- ``subject`` -- what it is about: a job id, a box id, ``budget``, a sink;
- ``idempotency_key`` -- ``type:subject[:occurrence]``, the same every time the same change is announced
  again (a queue redelivery or a retry re-runs the code that announces it); ``id`` is derived from it,
  so a receiver de-duplicates on either;
- ``time`` -- when the producer announced it (RFC 3339, UTC); ``source`` -- which part of gpuq did.

:func:`announce` is called right after the store write that made the change, and before anything that
could cause the subject's next change, so each subject's events are written in causal order. It keeps the
event in the store (insert-if-absent on the idempotency key: the store's order is the events' order, see
``JobStore.append_event``), and only a new event goes on: one log line (the log sink, always), then one
task per configured sink (webhook, Pub/Sub) on the callback queue. A re-run's event stops at the store.
A process killed between a change's write and its event loses that event; the changes the reaper repairs
announce their own.
"""

from __future__ import annotations

import hashlib
import logging
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from shared.observability.sinks.log import log_event
from shared.observability.sinks.task import queue_deliveries

if TYPE_CHECKING:
    from shared.controlplane import ControlPlane

__all__ = ["EVENT_FAMILIES", "EVENT_TYPES", "announce", "envelope", "event_id", "rfc3339"]

_INFO, _WARNING, _ERROR = logging.INFO, logging.WARNING, logging.ERROR

EVENT_TYPES: dict[str, int] = {
    "job.queued": _INFO,
    "job.started": _INFO,
    "job.output": _INFO,
    "job.succeeded": _INFO,
    "job.failed": _WARNING,
    "job.cancelled": _INFO,
    "job.expired": _WARNING,
    "instance.start_requested": _INFO,
    "instance.provisioning": _INFO,
    "instance.ready": _INFO,
    "instance.draining": _INFO,
    "instance.stopped": _INFO,
    "instance.destroyed": _INFO,
    "instance.failed": _ERROR,
    "instance.lost": _WARNING,
    "cost.session_closed": _INFO,
    "cost.budget_warning": _WARNING,
    "cost.budget_exceeded": _ERROR,
    "health.degraded": _WARNING,
    "health.unhealthy": _ERROR,
}
"""Every event type, with the level of its log line."""

EVENT_FAMILIES = frozenset(t.split(".", 1)[0] + "." for t in EVENT_TYPES)
"""The prefixes a reader may filter on (``job.``, ``instance.``, ``cost.``, ``health.``)."""


def rfc3339(ts: float) -> str:
    """``2025-01-31T12:00:00.123Z``."""
    return datetime.fromtimestamp(ts, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def event_id(idempotency_key: str) -> str:
    """Stable per idempotency key, so the webhook's ``webhook-id`` is the same on every delivery."""
    return "evt_" + hashlib.sha256(idempotency_key.encode()).hexdigest()[:24]


def envelope(
    event_type: str, subject: str, data: dict[str, Any], *, occurrence: str, source: str, now: float
) -> dict[str, Any]:
    """The event as it is stored, logged and delivered (JSON-ready)."""
    if event_type not in EVENT_TYPES:
        raise ValueError(f"unknown event type {event_type!r}")
    key = f"{event_type}:{subject}" + (f":{occurrence}" if occurrence else "")
    return {
        "type": event_type,
        "id": event_id(key),
        "time": rfc3339(now),
        "source": f"/gpuq/{source}",
        "subject": subject,
        "idempotency_key": key,
        "data": data,
    }


def announce(
    cp: ControlPlane,
    event_type: str,
    subject: str,
    data: dict[str, Any],
    *,
    source: str,
    occurrence: str = "",
) -> bool:
    """Announce one state change (see the module docstring). ``occurrence`` tells apart the changes of one
    type that one subject has more than once (an attempt number, a box's run). Returns False when the same
    change was announced before (nothing is logged or sent again). A store failure propagates: the caller's
    request fails and its retry announces again."""
    now = cp.clock.now()
    event = envelope(event_type, subject, data, occurrence=occurrence, source=source, now=now)
    settings = cp.settings
    if settings.events_enabled and not cp.store.append_event(event, now=now, keep_s=settings.event_retention_s):
        return False
    log_event(event, EVENT_TYPES[event_type])
    if settings.events_enabled:
        queue_deliveries(cp, event)
    return True
