"""A malformed queue task, against the real functions process and the real Cloud Tasks emulator.

An authenticated task whose body does not parse is answered 2xx ("dropped"), logged once at warning
level with the reason (never the secret), and never redelivered: before, it was a 4xx or a 500 that the
emulator redelivered every 0.1 s, forever. The job it names is left untouched; valid tasks still run.
"""

from __future__ import annotations

import json
import secrets
import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from google.cloud.tasks_v2 import HttpMethod, HttpRequest, Queue, Task

from shared.security.signing import TASK_SIGNATURE_HEADER, sign_task
from shared.store.queue import TaskQueue
from shared.tools.client import JobsClient
from shared.tools.devstack import DevStack
from shared.tools.receiver import CallbackReceiver
from tests.servers import MODEL, wait_until

QUEUE = "gpuq-test-malformed"  # a running queue of its own: its tasks are dispatched, then counted

# One of each kind, each broken in a way the old dispatch turned into a redelivery loop.
MALFORMED = {
    "job seq as a string": (b'{"kind":"job","job_id":"job_nope","seq":"zero"}', "job.seq"),
    "lease attempt as a float": (b'{"kind":"lease","job_id":"job_nope","attempt":1.5}', "lease.attempt"),
    "callback without event_id": (
        b'{"kind":"callback","job_id":"job_nope","type":"job.completed","try":1}',
        "callback.event_id",
    ),
    "unknown kind": (b'{"kind":"bench","job_id":"job_nope"}', "expected tags"),
    "not JSON": (b'{"kind":"job","job_id":', "Invalid JSON"),
}


def functions_log(stack: DevStack) -> str:
    return (stack.log_dir / "functions.log").read_text(errors="replace")


def dropped_lines(stack: DevStack, task_name: str) -> list[str]:
    return [
        line
        for line in functions_log(stack).splitlines()
        if f"dropped a malformed task {task_name} " in line and " WARNING gpuq.dispatch: " in line
    ]


def post_task(stack: DevStack, body: bytes, *, task_name: str) -> httpx.Response:
    """POST to dispatch as the emulator does: the body signed by our queue client, Cloud Tasks' headers."""
    headers = {
        "Content-Type": "application/json",
        TASK_SIGNATURE_HEADER: sign_task(stack.settings.task_secret, body),
        "X-CloudTasks-TaskName": task_name,
        "X-CloudTasks-TaskRetryCount": "0",
    }
    return httpx.post(stack.settings.dispatch_target(), content=body, headers=headers, timeout=30)


@pytest.mark.parametrize(("body", "says"), MALFORMED.values(), ids=MALFORMED.keys())
def test_a_malformed_task_is_answered_2xx_dropped_and_logged(stack: DevStack, body: bytes, says: str) -> None:
    name = f"direct-{secrets.token_hex(6)}"
    response = post_task(stack, body, task_name=name)
    assert response.status_code == 200, response.text
    answer = response.json()
    assert answer["outcome"] == "dropped" and says in answer["reason"]
    wait_until(lambda: len(dropped_lines(stack, name)) == 1, 10, "the dropped task's log line")
    [line] = dropped_lines(stack, name)
    assert says in line
    log = functions_log(stack)
    assert stack.settings.task_secret not in log
    assert response.request.headers[TASK_SIGNATURE_HEADER].split("v1=")[1] not in log


def test_a_badly_signed_task_is_still_refused(stack: DevStack) -> None:
    """Dropping is for our own tasks: a body nobody signed is a 401, parseable or not."""
    for body in (b'{"kind":"job","job_id":"job_nope","seq":0}', b"not json"):
        response = httpx.post(
            stack.settings.dispatch_target(),
            content=body,
            headers={"Content-Type": "application/json", TASK_SIGNATURE_HEADER: "t=1,v1=forged"},
            timeout=30,
        )
        assert response.status_code == 401 and response.json()["error"]["code"] == "invalid_task_signature"


@pytest.fixture
def running_queue(stack: DevStack) -> Iterator[TaskQueue]:
    queue = TaskQueue(stack.settings)
    parent = f"projects/{stack.settings.tasks_project}/locations/{stack.settings.tasks_location}"
    if queue.queue_path(QUEUE) not in {q.name for q in queue.client.list_queues(parent=parent)}:
        queue.client.create_queue(parent=parent, queue=Queue(name=queue.queue_path(QUEUE)))
    queue.resume(QUEUE)
    yield queue
    queue.client.purge_queue(name=queue.queue_path(QUEUE))  # never leave a looping task behind


def push_raw(stack: DevStack, queue: TaskQueue, body: bytes) -> str:
    """A task exactly as ``TaskQueue.push`` makes one, but with any body (a JSON object cannot be broken JSON)."""
    request = HttpRequest(
        url=stack.settings.dispatch_target(),
        http_method=HttpMethod.POST,
        headers={
            "Content-Type": "application/json",
            TASK_SIGNATURE_HEADER: sign_task(stack.settings.task_secret, body),
        },
        body=body,
    )
    task = queue.client.create_task(parent=queue.queue_path(QUEUE), task=Task(http_request=request))
    return str(task.name).rsplit("/", 1)[1]


def test_a_malformed_task_through_the_emulator_is_delivered_once(stack: DevStack, running_queue: TaskQueue) -> None:
    names = {label: push_raw(stack, running_queue, body) for label, (body, _) in MALFORMED.items()}
    valid = running_queue.push(QUEUE, {"kind": "job", "job_id": "job_nope", "seq": 0})  # answered "unknown_job"
    wait_until(lambda: running_queue.count_tasks(QUEUE) == 0, 20, "the test queue drained")
    time.sleep(1.0)  # ten of the emulator's retry periods: a redelivery would show by now
    for label, name in names.items():
        lines = dropped_lines(stack, name)
        assert len(lines) == 1, (label, lines)
        assert "(retries 0)" in lines[0] and MALFORMED[label][1] in lines[0]
    assert running_queue.count_tasks(QUEUE) == 0
    assert not dropped_lines(stack, valid.rsplit("/", 1)[1])


def job_row(stack: DevStack, job_id: str) -> tuple[int, str]:
    db = sqlite3.connect(f"file:{Path(stack.settings.sqlite_path())}?mode=ro", uri=True)
    try:
        row = db.execute("SELECT version, doc FROM jobs WHERE id = ?", (job_id,)).fetchone()
    finally:
        db.close()
    assert row is not None
    return int(row[0]), str(row[1])


def test_a_malformed_task_leaves_its_job_untouched_and_valid_tasks_still_run(
    stack: DevStack, client: JobsClient, receiver: CallbackReceiver
) -> None:
    queue = TaskQueue(stack.settings)
    queue.pause(stack.settings.job_queue)  # the job stays queued, at dispatch_seq 0, while it is poked
    try:
        job_id = client.submit({"model": MODEL, "prompt": "left alone", "callback_url": receiver.url})["id"]
        before = job_row(stack, job_id)
        # Each close enough to a valid task that the old dispatch would have acted on it (int("0"), int(1.0)).
        for body in (
            {"kind": "job", "job_id": job_id, "seq": "0"},
            {"kind": "job", "job_id": job_id, "seq": 0.0},
            {"kind": "job", "job_id": job_id, "seq": 0, "attempt": 1},
            {"kind": "lease", "job_id": job_id, "attempt": "0"},
            {"kind": "callback", "job_id": job_id, "event_id": f"evt_{job_id}_0_completed", "type": "job.completed"},
        ):
            response = post_task(stack, json.dumps(body).encode(), task_name=f"poke-{secrets.token_hex(4)}")
            assert response.status_code == 200 and response.json()["outcome"] == "dropped", (body, response.text)
        assert job_row(stack, job_id) == before
        assert client.get(job_id)["status"] == "queued"
    finally:
        queue.resume(stack.settings.job_queue)
    final = client.wait(job_id, timeout_s=60)  # its own, valid, task runs it
    assert final["status"] == "succeeded" and final["attempts"] == 1
    assert receiver.wait_for(lambda events: any(e.data["id"] == job_id for e in events), timeout=30)
