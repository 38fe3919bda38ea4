"""The Pub/Sub sink: each event published to ``GPUQ_EVENT_PUBSUB_TOPIC`` (``projects/P/topics/T``) with the
``google-cloud-pubsub`` client (the ``gcp`` extra), imported only when the first event is published.

The message is the envelope as JSON; its attributes are the event's ``type``, ``subject`` and ``id``, so a
subscription can filter on them (``attributes.type = "instance.lost"``) and a subscriber de-duplicates on
``id`` (a try whose answer was lost is published again). One publisher client per process; the client
honours ``PUBSUB_EMULATOR_HOST``, which is how tests and the dev stack reach the emulator.
"""

from __future__ import annotations

import functools
import json
from typing import TYPE_CHECKING, Any

from shared.observability.sinks.outcome import Delivery

if TYPE_CHECKING:
    from google.cloud.pubsub_v1 import PublisherClient

    from shared.controlplane import ControlPlane

__all__ = ["PUBLISH_TIMEOUT_S", "publish_event"]

PUBLISH_TIMEOUT_S = 10.0


@functools.cache
def _publisher() -> PublisherClient:
    from google.cloud import pubsub_v1

    return pubsub_v1.PublisherClient()


def publish_event(cp: ControlPlane, event: dict[str, Any]) -> Delivery:
    """Publish the event once and wait for the server's message id."""
    from google.api_core import exceptions as gexc

    body = json.dumps(event, separators=(",", ":")).encode()
    attributes = {"type": str(event["type"]), "subject": str(event["subject"]), "id": str(event["id"])}
    try:
        _publisher().publish(cp.settings.event_pubsub_topic, body, **attributes).result(timeout=PUBLISH_TIMEOUT_S)
    except gexc.InvalidArgument as exc:  # not a topic name: no retry can mend it (a missing topic or right may)
        return Delivery(f"{type(exc).__name__}: {exc.message}"[:300], final=True)
    except (gexc.GoogleAPIError, TimeoutError) as exc:
        return Delivery(f"{type(exc).__name__}: {exc}"[:300])
    return Delivery(None)
