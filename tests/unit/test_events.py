"""Events on a real SQLite store: the envelope, :func:`announce` (kept once, logged once, one delivery task
per configured sink), the reading side's query checks and cursors, the JSON log lines, and the box
registry's own events and idle seconds decided by compare-and-set."""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from shared.boxes.idletime import idle_seconds
from shared.boxes.instances import close_session, note_start_requested
from shared.boxes.pools import PoolConfig, Pools
from shared.boxes.providers.local import LocalProvider
from shared.boxes.registry import claim_starts, mark_ready, release_slot, reserve_slot
from shared.boxes.scaling import decide_target
from shared.clock import FakeClock
from shared.controlplane import ControlPlane
from shared.errors import InvalidRequest, ValidationFailed
from shared.observability.event_log import decode_cursor, encode_cursor, parse_event_query, read_events
from shared.observability.events import EVENT_TYPES, announce, envelope
from shared.observability.logs import JsonFormatter
from shared.observability.sinks.log import summary
from shared.observability.sinks.task import EventTask, matches_types, wanted_sinks
from shared.security.signing import NonceCache
from shared.settings import ControlPlaneSettings
from shared.store import SqliteJobStore

POOL = PoolConfig(name="gpu", models=["m"], max_boxes=2, jobs_per_box=2)


class RecordingQueue:
    def __init__(self) -> None:
        self.pushed: list[tuple[str, dict[str, Any]]] = []
        self._lock = threading.Lock()

    def push(self, queue: str, payload: dict[str, Any], *, delay_s: float = 0.0) -> str:
        with self._lock:
            self.pushed.append((queue, payload))
        return "task"


def _plane(tmp_path: Path, **settings: Any) -> ControlPlane:
    return ControlPlane(
        settings=ControlPlaneSettings(data_dir=tmp_path, **settings),
        store=SqliteJobStore(tmp_path / "gpuq.db"),
        queue=RecordingQueue(),  # type: ignore[arg-type]
        provider=LocalProvider(tmp_path / "boxes"),
        nonces=NonceCache(),
        pools=Pools((POOL,)),
        clock=FakeClock(1_700_000_000.25),
    )


@pytest.fixture
def cp(tmp_path: Path) -> Iterator[ControlPlane]:
    plane = _plane(tmp_path, event_webhook_url="https://hooks.example/x", event_webhook_types="instance.,job.failed")
    yield plane
    plane.store.close()


def _events(cp: ControlPlane, **query: str) -> list[dict[str, Any]]:
    return read_events(cp, parse_event_query(query))["data"]


def test_the_envelope_has_exactly_the_contracts_fields() -> None:
    event = envelope("job.started", "job_1", {"attempt": 2}, occurrence="2", source="reports", now=1_700_000_000.5)
    assert list(event) == ["type", "id", "time", "source", "subject", "idempotency_key", "data"]
    assert event["time"] == "2023-11-14T22:13:20.500Z" and event["source"] == "/gpuq/reports"
    assert event["idempotency_key"] == "job.started:job_1:2" and event["id"].startswith("evt_")
    assert envelope("job.started", "job_1", {}, occurrence="2", source="x", now=0)["id"] == event["id"]
    with pytest.raises(ValueError):
        envelope("job.exploded", "job_1", {}, occurrence="", source="x", now=0)


def test_an_announced_change_is_kept_logged_and_queued_once(cp: ControlPlane, caplog: pytest.LogCaptureFixture) -> None:
    queue: RecordingQueue = cp.queue  # type: ignore[assignment]
    with caplog.at_level(logging.INFO, logger="gpuq.events"):
        assert announce(cp, "instance.ready", "gpu-1", {"reason": "agent_ready", "cold_start_s": 3.5}, source="t")
        assert not announce(cp, "instance.ready", "gpu-1", {"reason": "again"}, source="t")  # a re-run
        assert announce(cp, "job.queued", "job_1", {"model": "m"}, source="t")  # not for the webhook's filter
    assert [e["type"] for e in _events(cp)] == ["instance.ready", "job.queued"]
    lines = [r for r in caplog.records if r.name == "gpuq.events"]
    assert [r.getMessage() for r in lines] == [
        "instance.ready gpu-1: agent_ready (cold_start_s=3.5)",
        "job.queued job_1 (model=m)",
    ]
    assert getattr(lines[0], "event")["subject"] == "gpu-1"  # noqa: B009 (set through logging's extra)
    assert [(q, p["sink"], p["event"]["type"]) for q, p in queue.pushed] == [
        ("gpuq-callbacks", "webhook", "instance.ready")
    ]
    assert EventTask.model_validate(queue.pushed[0][1]).try_number == 1


def test_with_events_off_a_change_is_only_logged(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    cp = _plane(tmp_path, events_enabled=False, event_webhook_url="https://hooks.example/x")
    with caplog.at_level(logging.INFO, logger="gpuq.events"):
        assert announce(cp, "job.queued", "job_1", {}, source="t")
    assert _events(cp) == [] and cp.queue.pushed == []  # type: ignore[attr-defined]
    assert [r.getMessage() for r in caplog.records if r.name == "gpuq.events"] == ["job.queued job_1"]
    cp.store.close()


def test_sinks_pick_their_events() -> None:
    settings = ControlPlaneSettings(event_pubsub_topic="projects/p/topics/t", event_webhook_url="https://h/x")
    webhook_down = {"type": "health.degraded", "data": {"component": "event_webhook"}}
    assert wanted_sinks(settings, webhook_down) == ["pubsub"]  # a sink's own failure is not sent to it
    assert wanted_sinks(settings, {"type": "job.queued", "data": {}}) == ["webhook", "pubsub"]
    assert matches_types("instance.lost", ["instance."]) and not matches_types("instances.x", ["instance."])
    assert matches_types("job.failed", ["job.failed"]) and not matches_types("job.failed_x", ["job.failed"])


def test_the_query_refuses_what_it_does_not_know() -> None:
    assert parse_event_query({"type": "instance.,job.failed", "limit": "500"}).types == ("instance.", "job.failed")
    for query, code in (
        ({"type": "job.exploded"}, "unknown_event_type"),
        ({"type": ""}, "unknown_event_type"),
        ({"type": "job., job.failed"}, "unknown_event_type"),
        ({"type": "job.,,cost."}, "unknown_event_type"),
        ({"type": "jo."}, "unknown_event_type"),
        ({"limit": "0"}, "invalid_limit"),
        ({"limit": "501"}, "invalid_limit"),
        ({"limit": "ten"}, "invalid_limit"),
        ({"subject": "a b"}, "invalid_subject"),
        ({"after": "x"}, "validation_failed"),  # unknown parameter
    ):
        with pytest.raises(ValidationFailed) as refused:
            parse_event_query(query)
        assert refused.value.code == code, query
    for cursor in ("", "nope", "ev1.!!", "ev1." + "_" * 5):
        with pytest.raises(InvalidRequest):
            decode_cursor(cursor)
    assert decode_cursor(encode_cursor("1700000000.000000123.ab")) == "1700000000.000000123.ab"


def test_a_poller_passes_next_back_and_sees_each_event_once(cp: ControlPlane) -> None:
    first = read_events(cp, parse_event_query({}))
    assert first == {"object": "list", "data": [], "has_more": False, "next": first["next"]}
    for i in range(3):
        announce(cp, "job.queued", f"job_{i}", {}, source="t")
    page = read_events(cp, parse_event_query({"since": first["next"], "limit": "2"}))
    assert [e["subject"] for e in page["data"]] == ["job_0", "job_1"] and page["has_more"]
    rest = read_events(cp, parse_event_query({"since": page["next"]}))
    assert [e["subject"] for e in rest["data"]] == ["job_2"] and not rest["has_more"]
    idle = read_events(cp, parse_event_query({"since": rest["next"]}))
    assert idle["data"] == [] and idle["next"] == rest["next"]


def test_json_log_lines_carry_the_envelope() -> None:
    event = envelope("health.unhealthy", "gpu-1", {"reason": "no_heartbeat"}, occurrence="", source="r", now=5.0)
    record = logging.LogRecord("gpuq.events", logging.ERROR, __file__, 1, "%s %s", ("a", "b"), None)
    record.event = event
    line = json.loads(JsonFormatter("functions").format(record))
    assert line == {
        "time": line["time"],
        "severity": "ERROR",
        "logger": "gpuq.events",
        "component": "functions",
        "message": "a b",
        "event": event,
    }
    try:
        raise RuntimeError("boom")
    except RuntimeError:
        import sys

        failed = logging.LogRecord("gpuq", logging.ERROR, __file__, 1, "failed", (), sys.exc_info())
    assert "RuntimeError: boom" in json.loads(JsonFormatter("agent").format(failed))["exception"]


def test_every_type_has_a_log_level_and_long_summaries_are_cut() -> None:
    assert all(level in (logging.INFO, logging.WARNING, logging.ERROR) for level in EVENT_TYPES.values())
    assert len(summary({"reason": "x" * 1000})) == 400


def test_racing_deciders_announce_one_start_and_the_registry_counts_idle_seconds(tmp_path: Path) -> None:
    planes = [_plane(tmp_path) for _ in range(4)]
    decision = decide_target(queued_work_s=1.0, active=0, slots_per_box=2, cold_start_s=5.0, max_boxes=2)
    barrier = threading.Barrier(len(planes))

    def decide(cp: ControlPlane) -> None:
        barrier.wait()
        claim_starts(cp, POOL, decision)

    threads = [threading.Thread(target=decide, args=(cp,)) for cp in planes]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    cp = planes[0]
    clock: FakeClock = cp.clock  # type: ignore[assignment]
    note_start_requested(cp, "gpu-1", 0.5, pool="gpu")
    clock.advance(3.0)
    mark_ready(cp, "gpu-1", "gpu")  # up with nothing to run: idle from now
    clock.advance(5.0)
    assert reserve_slot(cp, "gpu-1", "job_a", work_s=1.0, slots=2)
    clock.advance(4.0)
    release_slot(cp, "gpu-1", "job_a")  # idle again
    clock.advance(2.0)
    closed = close_session(cp, "gpu-1", stopped_at=clock.now())
    assert closed is not None and closed["idle_s"] == idle_seconds(closed, 0.0) == 7.0
    started = _events(cp, subject="gpu-1")
    assert [e["type"] for e in started] == [
        "instance.start_requested",
        "instance.provisioning",
        "instance.ready",
        "cost.session_closed",
    ]
    assert started[0]["data"]["queued_work_s"] == 1.0 and started[0]["data"]["cold_start_s"] == 5.0
    assert started[3]["data"]["idle_s"] == 7.0 and started[3]["data"]["billed_s"] == 14.0
    for plane in planes:
        plane.store.close()
