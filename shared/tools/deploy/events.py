"""What the events need deployed: a TTL on their Firestore collection (as on the replay nonces'), and,
with ``GPUQ_EVENT_PUBSUB_TOPIC`` set, the Pub/Sub API, the topic, and the right of the dispatch function
(which delivers events, shared/observability/delivery.py) to publish to it."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import TYPE_CHECKING

from shared.tools.deploy.step import Step, g

if TYPE_CHECKING:
    from shared.tools.deploy.plan import Deployment

__all__ = ["pubsub_steps", "ttl_step"]


def _ttl_on(out: str) -> bool:
    """``expire_at`` among the TTL fields listed, its policy active (or being applied)."""
    try:
        fields = json.loads(out)
        states = [
            (f.get("ttlConfig") or {}).get("state") for f in fields if str(f.get("name", "")).endswith("/expire_at")
        ]
    except (ValueError, AttributeError, TypeError):
        return False
    return any(state in ("ACTIVE", "CREATING") for state in states)


def ttl_step(project: str, db: str, collection: str) -> Step:
    """The documents of ``collection`` are deleted once their ``expire_at`` has passed."""
    ttl_field = ("expire_at", f"--collection-group={collection}", db, f"--project={project}")
    return Step(
        f"TTL policy on {collection}.expire_at",
        describe=g("firestore", "fields", "ttls", "list", *ttl_field[1:], "--format=json"),
        current=_ttl_on,
        current_note="unless it is on already",
        create=g("firestore", "fields", "ttls", "update", *ttl_field, "--enable-ttl", "--async"),
    )


def pubsub_steps(d: Deployment) -> Iterator[Step]:
    topic = d.settings.get("GPUQ_EVENT_PUBSUB_TOPIC", "")
    if not topic:
        return
    project = topic.split("/")[1] if topic.startswith("projects/") else d.project
    yield Step("Pub/Sub API", g("services", "enable", "pubsub.googleapis.com", f"--project={d.project}"))
    yield Step(
        f"Pub/Sub topic {topic}",
        describe=g("pubsub", "topics", "describe", topic, f"--project={project}"),
        create=g("pubsub", "topics", "create", topic, f"--project={project}", "--labels=gpuq=1"),
    )
    yield Step(
        f"gpuq-dispatch publishes to {topic}",
        g(
            "pubsub",
            "topics",
            "add-iam-policy-binding",
            topic,
            f"--member=serviceAccount:{d.sa('dispatch')}",
            "--role=roles/pubsub.publisher",
            f"--project={project}",
        ),
    )
