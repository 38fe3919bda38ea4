"""The network sinks over real sockets: the event webhook to a receiver on 127.0.0.1 (verified with the
reference ``standardwebhooks`` library, retried after a refusal), and the Pub/Sub sink through the real
emulator, read back with a subscription."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from standardwebhooks.webhooks import Webhook

from shared.boxes.pools import PoolConfig, Pools
from shared.boxes.providers.local import LocalProvider
from shared.clock import SystemClock
from shared.controlplane import ControlPlane
from shared.jobs.tasks import EventTask, parse_task
from shared.observability.delivery import deliver_event
from shared.observability.event_log import parse_event_query, read_events
from shared.observability.events import announce
from shared.security.signing import NonceCache
from shared.settings import ControlPlaneSettings
from shared.store import SqliteJobStore
from shared.tools.receiver import CallbackReceiver
from tests.pubsub_emulator import PubSubEmulator

SECRET = "whsec_" + "c2VjcmV0LXNlY3JldC1zZWNyZXQtc2VjcmV0"
PROJECT = "gpuq-test"


class RecordingQueue:
    def __init__(self) -> None:
        self.pushed: list[tuple[dict[str, Any], float]] = []

    def push(self, queue: str, payload: dict[str, Any], *, delay_s: float = 0.0) -> str:
        assert queue == "gpuq-callbacks"  # event deliveries ride the callback queue
        self.pushed.append((payload, delay_s))
        return "task"

    def take(self) -> EventTask:
        """The last task pushed, read back as dispatch reads it off the wire."""
        payload, _ = self.pushed.pop()
        task = parse_task(json.dumps(payload).encode())
        assert isinstance(task, EventTask)
        return task


def _plane(tmp_path: Path, **settings: Any) -> ControlPlane:
    return ControlPlane(
        settings=ControlPlaneSettings(
            data_dir=tmp_path, callback_allow_hosts="127.0.0.1", callback_allow_http=True, **settings
        ),
        store=SqliteJobStore(tmp_path / "gpuq.db"),
        queue=RecordingQueue(),  # type: ignore[arg-type]
        provider=LocalProvider(tmp_path / "boxes"),
        nonces=NonceCache(),
        pools=Pools((PoolConfig(name="gpu", models=["m"]),)),
        clock=SystemClock(),
    )


@pytest.fixture
def receiver() -> Iterator[CallbackReceiver]:
    rec = CallbackReceiver(SECRET).start()
    yield rec
    rec.stop()


def test_an_event_reaches_the_webhook_signed_and_is_retried_after_a_refusal(
    tmp_path: Path, receiver: CallbackReceiver
) -> None:
    cp = _plane(tmp_path, event_webhook_url=receiver.url, event_webhook_secret=SECRET)
    queue: RecordingQueue = cp.queue  # type: ignore[assignment]
    announce(cp, "instance.lost", "gpu-1", {"reason": "no_heartbeat", "silent_s": 301.0}, source="test")
    receiver.fail_next(1)
    assert deliver_event(cp, queue.take()) == "retrying"
    ((payload, delay_s),) = queue.pushed
    assert payload["try"] == 2 and delay_s > 0  # the next try, scheduled with backoff
    assert deliver_event(cp, queue.take()) == "delivered"
    ((headers, body),) = receiver.raw
    event = Webhook(SECRET).verify(body, headers)  # the reference library's own check
    assert event["type"] == "instance.lost" and event["subject"] == "gpu-1" and headers["webhook-id"] == event["id"]
    assert event == read_events(cp, parse_event_query({}))["data"][0]
    cp.store.close()


def test_a_refused_webhook_target_is_dead_at_once_and_says_so(tmp_path: Path) -> None:
    cp = _plane(tmp_path, event_webhook_url="http://10.0.0.1/hook")  # a private address, not allow-listed
    queue: RecordingQueue = cp.queue  # type: ignore[assignment]
    announce(cp, "job.failed", "job_1", {"reason": "timeout"}, source="test")
    assert deliver_event(cp, queue.take()) == "failed"
    events = read_events(cp, parse_event_query({"type": "health."}))["data"]
    assert [(e["subject"], e["data"]["reason"], e["data"]["event_type"]) for e in events] == [
        ("event_webhook", "delivery_failed", "job.failed")
    ]
    assert queue.pushed == []  # the webhook's own failure is not sent to it
    cp.store.close()


def test_events_are_published_to_pubsub_and_read_back_with_a_subscription(
    tmp_path: Path, pubsub_emulator: PubSubEmulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PUBSUB_EMULATOR_HOST", pubsub_emulator.host)
    from google.cloud import pubsub_v1

    topic = f"projects/{PROJECT}/topics/events-{uuid.uuid4().hex[:8]}"
    subscription = topic.replace("/topics/", "/subscriptions/")
    pubsub_v1.PublisherClient().create_topic(name=topic)
    subscriber = pubsub_v1.SubscriberClient()
    subscriber.create_subscription(name=subscription, topic=topic)
    cp = _plane(tmp_path, event_pubsub_topic=topic)
    queue: RecordingQueue = cp.queue  # type: ignore[assignment]
    announce(cp, "job.queued", "job_1", {"model": "m"}, source="test")
    announce(cp, "job.started", "job_1", {"attempt": 1}, source="test", occurrence="1")
    tasks = [queue.take() for _ in range(2)]
    assert [deliver_event(cp, task) for task in reversed(tasks)] == ["delivered", "delivered"]
    received: list[Any] = []
    for _ in range(20):
        answer = subscriber.pull(subscription=subscription, max_messages=10, timeout=10)
        received += answer.received_messages
        if len(received) >= 2:
            break
    subscriber.acknowledge(subscription=subscription, ack_ids=[m.ack_id for m in received])
    stored = read_events(cp, parse_event_query({}))["data"]
    assert sorted((json.loads(m.message.data) for m in received), key=lambda e: e["type"]) == stored
    attributes = {m.message.attributes["type"]: dict(m.message.attributes) for m in received}
    assert attributes["job.started"] == {"type": "job.started", "subject": "job_1", "id": stored[1]["id"]}
    subscriber.close()
    cp.store.close()


def test_a_topic_that_is_not_a_topic_name_is_dead_at_once(
    tmp_path: Path, pubsub_emulator: PubSubEmulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PUBSUB_EMULATOR_HOST", pubsub_emulator.host)
    cp = _plane(tmp_path, event_pubsub_topic="not-a-topic")
    queue: RecordingQueue = cp.queue  # type: ignore[assignment]
    announce(cp, "job.queued", "job_1", {}, source="test")
    assert deliver_event(cp, queue.take()) == "failed"
    assert [e["subject"] for e in read_events(cp, parse_event_query({"type": "health.degraded"}))["data"]] == [
        "event_pubsub"
    ]
    cp.store.close()
