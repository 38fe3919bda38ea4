"""The delivery task of one event to one network sink, on the callback queue (as job callbacks are).

The task carries the whole envelope, so a try reads nothing from the store. Which sinks want an event:
the webhook when ``GPUQ_EVENT_WEBHOOK_URL`` is set and the type passes ``GPUQ_EVENT_WEBHOOK_TYPES``; Pub/Sub
when ``GPUQ_EVENT_PUBSUB_TOPIC`` is set. A sink's own failure event (``health.degraded`` about that sink)
is not sent to that sink, so a sink that is down does not feed itself an endless chain of them.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from shared.errors import QueueUnavailable
from shared.settings import ControlPlaneSettings, split_csv

if TYPE_CHECKING:
    from shared.controlplane import ControlPlane

__all__ = ["SINKS", "EventTask", "matches_types", "push_event_task", "queue_deliveries", "wanted_sinks"]

log = logging.getLogger("gpuq.events")

Sink = Literal["webhook", "pubsub"]
SINKS: tuple[Sink, ...] = ("webhook", "pubsub")


class EventTask(BaseModel):
    """One delivery try of one event to one sink (``try`` as on the callback tasks' wire)."""

    model_config = ConfigDict(strict=True, extra="forbid", frozen=True)

    kind: Literal["event"] = "event"
    sink: Sink
    event: dict[str, Any]
    try_number: int = Field(ge=1, alias="try")

    @classmethod
    def of(cls, sink: Sink, event: dict[str, Any], try_number: int = 1) -> EventTask:
        return cls.model_validate({"sink": sink, "event": event, "try": try_number})

    def payload(self) -> dict[str, Any]:
        return self.model_dump(by_alias=True)


def matches_types(event_type: str, types: list[str]) -> bool:
    """Whether ``event_type`` is one of ``types``: exact types, or prefixes ending in ``.`` (empty: any)."""
    return not types or any(event_type.startswith(t) if t.endswith(".") else event_type == t for t in types)


def wanted_sinks(settings: ControlPlaneSettings, event: dict[str, Any]) -> list[Sink]:
    about = str(event.get("data", {}).get("component", ""))
    wanted: list[Sink] = []
    if (
        settings.event_webhook_url
        and about != "event_webhook"
        and matches_types(event["type"], split_csv(settings.event_webhook_types))
    ):
        wanted.append("webhook")
    if settings.event_pubsub_topic and about != "event_pubsub":
        wanted.append("pubsub")
    return wanted


def push_event_task(cp: ControlPlane, task: EventTask, *, delay_s: float = 0.0) -> None:
    cp.queue.push(cp.settings.callback_queue, task.payload(), delay_s=delay_s)


def queue_deliveries(cp: ControlPlane, event: dict[str, Any]) -> None:
    """One task per sink that wants the event. A queue that refuses is logged, not raised: the change the
    event announces has happened, and the event is in the store and the log already."""
    for sink in wanted_sinks(cp.settings, event):
        try:
            push_event_task(cp, EventTask.of(sink, event))
        except QueueUnavailable as exc:
            log.error("event %s not queued for the %s sink: %s", event["id"], sink, exc.message)
