"""Events through the whole local stack: a cold box, one job, the box stopping itself. Read back with
``GET /v1/events`` as a poller does (following ``next``), each expected event once, in causal order per
subject; the same events at the account's webhook (a receiver on 127.0.0.1, verified with the reference
``standardwebhooks`` library) and on a Pub/Sub topic of the real emulator; and every log line of the
functions and the agent a JSON object (``GPUQ_LOG_FORMAT=json``), each event's line with its envelope."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from standardwebhooks.webhooks import Webhook

from shared.tools.client import JobsClient
from shared.tools.devstack import DevStack
from shared.tools.receiver import CallbackReceiver
from tests.pubsub_emulator import PubSubEmulator
from tests.servers import MODEL, start_stack, wait_until

SECRET = "whsec_" + "ZXZlbnRzLWV2ZW50cy1ldmVudHMtZXZlbnRz"
JOB_ORDER = ["job.queued", "job.started", "job.output", "job.succeeded"]
BOX_ORDER = ["instance.start_requested", "instance.provisioning", "instance.ready", "instance.draining"]


@pytest.fixture
def topic(pubsub_emulator: PubSubEmulator, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[str, str]]:
    monkeypatch.setenv("PUBSUB_EMULATOR_HOST", pubsub_emulator.host)
    from google.cloud import pubsub_v1

    name = f"projects/gpuq-e2e/topics/events-{uuid.uuid4().hex[:8]}"
    subscription = name.replace("/topics/", "/subscriptions/")
    pubsub_v1.PublisherClient().create_topic(name=name)
    with pubsub_v1.SubscriberClient() as subscriber:
        subscriber.create_subscription(name=subscription, topic=name)
    yield name, subscription


@pytest.fixture
def events_stack(tmp_path: Path, topic: tuple[str, str], pubsub_emulator: PubSubEmulator) -> Iterator[DevStack]:
    receiver = CallbackReceiver(SECRET).start()
    stack = start_stack(
        tmp_path / "stack",
        overrides={"event_webhook_url": receiver.url, "event_webhook_secret": SECRET, "event_pubsub_topic": topic[0]},
        extra_env={"GPUQ_LOG_FORMAT": "json", "PUBSUB_EMULATOR_HOST": pubsub_emulator.host},
    )
    stack.receiver = receiver  # type: ignore[attr-defined]
    try:
        yield stack
    finally:
        stack.stop()
        receiver.stop()


def _poll(stack: DevStack, since: str | None, seen: list[dict[str, Any]]) -> str:
    """Read every page after ``since`` (two events a page, as a poller with a small limit would)."""
    headers = {"Authorization": f"Bearer {stack.api_key}"}
    while True:
        params = {"limit": "2", **({"since": since} if since else {})}
        answer = httpx.get(stack.url + "/v1/events", params=params, headers=headers, timeout=10)
        assert answer.status_code == 200, answer.text
        page = answer.json()
        seen += page["data"]
        since = page["next"]
        if not page["has_more"]:
            return since


def _order(events: list[dict[str, Any]], subject: str) -> list[str]:
    return [e["type"] for e in events if e["subject"] == subject]


def test_one_scenarios_events_appear_once_in_causal_order_in_the_log_the_webhook_and_pubsub(
    events_stack: DevStack, topic: tuple[str, str]
) -> None:
    stack, receiver = events_stack, events_stack.receiver  # type: ignore[attr-defined]
    assert httpx.get(stack.url + "/v1/events").status_code == 401
    client = JobsClient(stack.url, stack.api_key)
    try:
        job = client.submit({"model": MODEL, "prompt": "tell me about events"})
        assert client.wait(job["id"], timeout_s=60)["status"] == "succeeded"
    finally:
        client.close()
    seen: list[dict[str, Any]] = []
    cursor = _poll(stack, None, seen)

    def box_stopped() -> bool:
        nonlocal cursor
        cursor = _poll(stack, cursor, seen)
        return any(e["type"] == "instance.stopped" for e in seen)

    wait_until(box_stopped, 60, "the box's instance.stopped event", poll_s=0.2)
    keys = [e["idempotency_key"] for e in seen]
    assert len(keys) == len(set(keys)), "an event appeared twice"
    assert _order(seen, job["id"]) == JOB_ORDER
    box = next(e["subject"] for e in seen if e["type"] == "instance.start_requested")
    box_events = "; ".join(f"{e['type']} {e['source']} {e['data']}" for e in seen if e["subject"] == box)
    assert _order(seen, box) == [*BOX_ORDER, "cost.session_closed", "instance.stopped"], box_events
    start = next(e for e in seen if e["type"] == "instance.start_requested")
    assert start["data"]["queued_work_s"] > 0 and start["data"]["cold_start_s"] > 0  # the numbers that decided
    assert next(e for e in seen if e["type"] == "instance.stopped")["data"]["reason"] == "drained_idle"
    _check_webhook(receiver, seen)
    _check_pubsub(topic[1], seen)
    _check_json_logs(stack.log_dir, seen)


def _check_webhook(receiver: CallbackReceiver, seen: list[dict[str, Any]]) -> None:
    assert receiver.wait_for(lambda got: len(got) >= len(seen), timeout=30)
    delivered = {}
    for headers, body in list(receiver.raw):
        event = Webhook(SECRET).verify(body, headers)
        delivered[event["id"]] = event
    assert delivered == {e["id"]: e for e in seen}


def _check_pubsub(subscription: str, seen: list[dict[str, Any]]) -> None:
    from google.cloud import pubsub_v1

    received: dict[str, dict[str, Any]] = {}
    with pubsub_v1.SubscriberClient() as subscriber:
        for _ in range(30):
            answer = subscriber.pull(subscription=subscription, max_messages=100, timeout=10)
            for message in answer.received_messages:
                received[message.message.attributes["id"]] = json.loads(message.message.data)
            if answer.received_messages:
                subscriber.acknowledge(subscription=subscription, ack_ids=[m.ack_id for m in answer.received_messages])
            if len(received) >= len(seen):
                break
    assert received == {e["id"]: e for e in seen}


def _check_json_logs(log_dir: Path, seen: list[dict[str, Any]]) -> None:
    functions = [json.loads(line) for line in (log_dir / "functions.log").read_text().splitlines() if line]
    agents = [
        json.loads(line) for path in log_dir.glob("agent-*.log") for line in path.read_text().splitlines() if line
    ]
    assert functions and agents
    assert {line["component"] for line in functions} == {"functions"}
    assert {line["component"] for line in agents} == {"agent"}
    logged = [line["event"] for line in functions if line.get("logger") == "gpuq.events" and "event" in line]
    assert sorted(logged, key=lambda e: e["id"]) == sorted(seen, key=lambda e: e["id"])
