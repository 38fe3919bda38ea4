"""Queue task payloads (``shared/jobs/tasks.py``): strict parsing, and the wire format producers always sent.

The producers are driven through a control plane whose queue records what it is given, so the bytes
each one pushes are compared with the ones it pushed before the payloads were typed: tasks already
sitting in a queue across an upgrade must parse, and new ones must read the same to an older dispatch.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, cast

import pytest

from shared.boxes.pools import load_pools
from shared.boxes.providers.local import LocalProvider
from shared.controlplane import ControlPlane
from shared.errors import InvalidRequest
from shared.jobs.callbacks import resend_failed
from shared.jobs.lifecycle import push_dispatch, push_lease_check
from shared.jobs.tasks import MALFORMED_TASK, CallbackTask, JobTask, LeaseTask, parse_task, push_task
from shared.models import Job
from shared.security.signing import NonceCache
from shared.settings import ControlPlaneSettings
from shared.store import SqliteJobStore
from shared.store.queue import TaskQueue

# Byte for byte what the producers pushed before these models (json.dumps, compact, in this key order).
LEGACY = {
    "job": b'{"kind":"job","job_id":"job_1","seq":3}',
    "lease": b'{"kind":"lease","job_id":"job_1","attempt":2}',
    "callback": b'{"kind":"callback","job_id":"job_1","event_id":"evt_job_1_1_completed",'
    b'"type":"job.completed","try":1}',
}


class RecordingQueue:
    """Stands in for ``TaskQueue``: keeps (queue, body bytes as ``TaskQueue.push`` encodes them, delay)."""

    def __init__(self) -> None:
        self.pushed: list[tuple[str, bytes, float]] = []

    def push(self, queue: str, payload: dict[str, Any], *, delay_s: float = 0.0) -> str:
        self.pushed.append((queue, json.dumps(payload, separators=(",", ":")).encode(), delay_s))
        return f"{queue}/tasks/{len(self.pushed)}"


@pytest.fixture
def recorded(tmp_path: Path) -> tuple[ControlPlane, RecordingQueue]:
    queue = RecordingQueue()
    settings = ControlPlaneSettings(data_dir=tmp_path)
    store = SqliteJobStore(tmp_path / "jobs.db")
    cp = ControlPlane(
        settings=settings,
        store=store,
        queue=cast(TaskQueue, queue),
        provider=LocalProvider(tmp_path / "boxes"),
        nonces=NonceCache(),
        pools=load_pools(settings),
    )
    return cp, queue


@pytest.mark.parametrize("kind", sorted(LEGACY))
def test_a_task_in_the_legacy_format_parses_and_encodes_back_to_the_same_bytes(kind: str) -> None:
    task = parse_task(LEGACY[kind])
    assert task.kind == kind
    assert json.dumps(task.payload(), separators=(",", ":")).encode() == LEGACY[kind]


def test_key_order_on_the_wire_does_not_matter() -> None:
    task = parse_task(b'{"try":4,"type":"job.failed","event_id":"e","job_id":"job_2","kind":"callback"}')
    assert task == CallbackTask.of(job_id="job_2", event_id="e", event_type="job.failed", try_number=4)


def test_each_producer_pushes_the_legacy_bytes_to_its_own_queue(recorded: tuple[ControlPlane, RecordingQueue]) -> None:
    cp, queue = recorded
    s = cp.settings
    push_dispatch(cp, "job_1", 3, delay_s=1.5)
    push_lease_check(cp, "job_1", 2, delay_s=-4.0)
    job = Job(id="job_1", owner="dev", model="m", prompt="p", max_queue_s=60.0, timeout_s=60.0, queued_at=0.0)
    job.callback_url = "http://127.0.0.1:9/hook"
    job.callback.failed = ["evt_job_1_1_completed"]
    cp.store.create(job, None)
    assert resend_failed(cp, job) == ["evt_job_1_1_completed"]
    assert queue.pushed == [
        (s.job_queue, LEGACY["job"], 1.5),
        (s.lease_queue, LEGACY["lease"], 0.0),
        (s.callback_queue, LEGACY["callback"], 0.0),
    ]


def test_push_task_picks_the_queue_of_the_kind(recorded: tuple[ControlPlane, RecordingQueue]) -> None:
    cp, queue = recorded
    push_task(cp, LeaseTask(job_id="j", attempt=1))
    push_task(cp, JobTask(job_id="j", seq=0))
    push_task(cp, CallbackTask.of(job_id="j", event_id="e", event_type="job.completed"))
    s = cp.settings
    assert [q for q, _, _ in queue.pushed] == [s.lease_queue, s.job_queue, s.callback_queue]


MALFORMED = [
    ("not JSON", b'{"kind":"job",', "Invalid JSON"),
    ("not UTF-8", b"\xff\xfe", "Invalid JSON"),
    ("empty", b"", "Invalid JSON"),
    ("not an object", b'["job","job_1",0]', "object"),
    ("no kind", b'{"job_id":"job_1","seq":0}', "discriminator 'kind'"),
    ("unknown kind", b'{"kind":"bench","job_id":"job_1"}', "expected tags"),
    ("seq as a string", b'{"kind":"job","job_id":"job_1","seq":"3"}', "job.seq"),
    ("seq as a float", b'{"kind":"job","job_id":"job_1","seq":3.0}', "job.seq"),
    ("seq as a bool", b'{"kind":"job","job_id":"job_1","seq":true}', "job.seq"),
    ("seq missing", b'{"kind":"job","job_id":"job_1"}', "job.seq: Field required"),
    ("negative seq", b'{"kind":"job","job_id":"job_1","seq":-1}', "job.seq"),
    ("job_id a number", b'{"kind":"job","job_id":7,"seq":0}', "job.job_id"),
    ("empty job_id", b'{"kind":"job","job_id":"","seq":0}', "job.job_id"),
    ("attempt as a string", b'{"kind":"lease","job_id":"job_1","attempt":"1"}', "lease.attempt"),
    ("attempt NaN", b'{"kind":"lease","job_id":"job_1","attempt":NaN}', "lease.attempt"),
    ("attempt null", b'{"kind":"lease","job_id":"job_1","attempt":null}', "lease.attempt"),
    ("unknown field", b'{"kind":"lease","job_id":"job_1","attempt":1,"x":1}', "lease.x"),
    (
        "try as a string",
        b'{"kind":"callback","job_id":"job_1","event_id":"e","type":"job.completed","try":"2"}',
        "callback.try",
    ),
    ("try zero", b'{"kind":"callback","job_id":"job_1","event_id":"e","type":"job.completed","try":0}', "callback.try"),
    ("event_id missing", b'{"kind":"callback","job_id":"job_1","type":"job.completed","try":1}', "callback.event_id"),
    (
        "try under its Python name",
        b'{"kind":"callback","job_id":"job_1","event_id":"e","type":"job.completed","try_number":1}',
        "callback.try",
    ),
]


@pytest.mark.parametrize(("body", "says"), [(b, s) for _, b, s in MALFORMED], ids=[n for n, _, _ in MALFORMED])
def test_a_malformed_task_is_an_invalid_request_saying_what_is_wrong(body: bytes, says: str) -> None:
    with pytest.raises(InvalidRequest) as caught:
        parse_task(body)
    assert caught.value.code == MALFORMED_TASK and says in caught.value.message


def test_the_reason_does_not_echo_the_values_sent() -> None:
    with pytest.raises(InvalidRequest) as caught:
        parse_task(b'{"kind":"job","job_id":"job_1","seq":"sk_live_do_not_log","extra":"whsec_do_not_log"}')
    assert "do_not_log" not in caught.value.message
    assert "job.seq" in caught.value.message and "job.extra" in caught.value.message


def test_the_reason_is_bounded_and_printable() -> None:
    body = json.dumps({"kind": "\x1b[31m" + "k" * 5000, "job_id": "j"}).encode()
    with pytest.raises(InvalidRequest) as caught:
        parse_task(body)
    assert len(caught.value.message) <= 300 and "\x1b" not in caught.value.message


def test_producers_cannot_build_a_wrongly_typed_task() -> None:
    with pytest.raises(ValueError):
        JobTask(job_id="job_1", seq=cast(int, "3"))
    with pytest.raises(ValueError):
        CallbackTask.of(job_id="job_1", event_id="e", event_type="job.completed", try_number=0)
