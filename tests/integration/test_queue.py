"""``TaskQueue.push`` against the real Cloud Tasks emulator.

The task must carry what dispatch checks (URL, method, JSON body, task signature, schedule time, OIDC
token), and a queue that cannot take it must be a ``QueueUnavailable``, after which nothing of the
job is kept: a 202 means the job is stored *and* its task is queued.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from concurrent import futures
from pathlib import Path
from typing import Any

import grpc
import pytest
from google.cloud.tasks_v2 import HttpMethod, Queue, Task
from google.cloud.tasks_v2.types import cloudtasks

from shared.boxes.pools import load_pools
from shared.boxes.providers.local import LocalProvider
from shared.controlplane import ControlPlane
from shared.errors import QueueUnavailable
from shared.jobs.intake import parse_job_create, submit_job
from shared.security.signing import TASK_SIGNATURE_HEADER, NonceCache, verify_task
from shared.settings import ControlPlaneSettings
from shared.states import JobStatus
from shared.store import SqliteJobStore
from shared.store.queue import TaskQueue
from shared.tools.devstack import DevStack, free_port
from tests.servers import MODEL

QUEUE = "gpuq-test-push"  # a queue of its own, paused: its tasks stay to be read back, never dispatched


@pytest.fixture
def queue(stack: DevStack) -> TaskQueue:
    q = TaskQueue(stack.settings)
    parent = f"projects/{stack.settings.tasks_project}/locations/{stack.settings.tasks_location}"
    if q.queue_path(QUEUE) not in {existing.name for existing in q.client.list_queues(parent=parent)}:
        q.client.create_queue(parent=parent, queue=Queue(name=q.queue_path(QUEUE)))
    q.pause(QUEUE)
    q.client.purge_queue(name=q.queue_path(QUEUE))
    return q


def only_task(queue: TaskQueue) -> Task:
    tasks = list(queue.client.list_tasks(parent=queue.queue_path(QUEUE)))
    assert len(tasks) == 1, tasks
    return tasks[0]


def test_a_pushed_task_is_a_signed_post_of_the_payload_to_dispatch(stack: DevStack, queue: TaskQueue) -> None:
    payload = {"kind": "job", "job_id": "job_0001", "seq": 3}
    name = queue.push(QUEUE, payload)
    task = only_task(queue)
    request = task.http_request
    assert task.name == name and name.startswith(queue.queue_path(QUEUE) + "/tasks/")
    assert request.url == stack.settings.dispatch_target() and request.http_method == HttpMethod.POST
    assert json.loads(request.body) == payload and request.headers["Content-Type"] == "application/json"
    verify_task(stack.settings.task_secret, request.headers[TASK_SIGNATURE_HEADER], request.body)
    assert not request.oidc_token.service_account_email  # none configured: no token asked for


def test_a_delayed_task_is_scheduled_that_much_later(queue: TaskQueue) -> None:
    before = time.time()
    queue.push(QUEUE, {"kind": "job", "job_id": "job_0002", "seq": 1}, delay_s=90.0)
    due = only_task(queue).schedule_time.timestamp()
    assert before + 90.0 <= due <= time.time() + 90.0


def test_with_a_service_account_the_task_asks_for_an_oidc_token_for_dispatch(stack: DevStack) -> None:
    settings = stack.settings.model_copy(update={"tasks_service_account": "tasks@gpuq-test.iam.gserviceaccount.com"})
    queue = TaskQueue(settings)
    queue.client.purge_queue(name=queue.queue_path(QUEUE))
    queue.pause(QUEUE)
    queue.push(QUEUE, {"kind": "job", "job_id": "job_0003", "seq": 0})
    token = only_task(queue).http_request.oidc_token
    assert token.service_account_email == "tasks@gpuq-test.iam.gserviceaccount.com"
    assert token.audience == settings.dispatch_target()


def test_an_unreachable_queue_service_is_queue_unavailable(stack: DevStack) -> None:
    nobody = stack.settings.model_copy(update={"tasks_emulator_host": f"127.0.0.1:{free_port()}"})
    with pytest.raises(QueueUnavailable) as caught:
        TaskQueue(nobody).push(QUEUE, {"kind": "job", "job_id": "job_0004", "seq": 0})
    assert caught.value.status == 503 and caught.value.code == "queue_unavailable"


@pytest.fixture
def refusing(stack: DevStack, tmp_path: Path) -> Iterator[ControlPlane]:
    """A control plane whose job queue does not exist on the emulator: every push is refused."""
    settings: ControlPlaneSettings = stack.settings.model_copy(update={"job_queue": "gpuq-no-such-queue"})
    store = SqliteJobStore(tmp_path / "jobs.db")
    yield ControlPlane(
        settings=settings,
        store=store,
        queue=TaskQueue(settings),
        provider=LocalProvider(tmp_path / "boxes"),
        nonces=NonceCache(),
        pools=load_pools(settings),
    )
    store.close()


@pytest.mark.parametrize("idempotency_key", [None, "key-1"])
def test_a_job_whose_task_is_refused_is_not_kept(refusing: ControlPlane, idempotency_key: str | None) -> None:
    request = parse_job_create({"model": MODEL, "prompt": "no queue", "idempotency_key": idempotency_key})
    with pytest.raises(QueueUnavailable):
        submit_job(refusing, "dev", request)
    assert refusing.store.list_by_status(list(JobStatus)) == []


class RecordingTasksService:
    """A gRPC server on 127.0.0.1 that answers CreateTask like Cloud Tasks and records what it was sent."""

    def __init__(self) -> None:
        self.calls: list[tuple[dict[str, str], float | None]] = []
        self.server = grpc.server(futures.ThreadPoolExecutor(max_workers=1))
        handler = grpc.unary_unary_rpc_method_handler(
            self._create_task,
            request_deserializer=cloudtasks.CreateTaskRequest.pb().FromString,
            response_serializer=lambda task: task.SerializeToString(),
        )
        self.server.add_generic_rpc_handlers(
            [grpc.method_handlers_generic_handler("google.cloud.tasks.v2.CloudTasks", {"CreateTask": handler})]
        )
        self.host = f"127.0.0.1:{self.server.add_insecure_port('127.0.0.1:0')}"

    def _create_task(self, request: Any, context: grpc.ServicerContext) -> Any:
        self.calls.append((dict(context.invocation_metadata()), context.time_remaining()))
        request.task.name = f"{request.parent}/tasks/1"
        return request.task


@pytest.fixture
def recording() -> Iterator[RecordingTasksService]:
    service = RecordingTasksService()
    service.server.start()
    yield service
    service.server.stop(grace=None)


def test_a_push_carries_the_routing_header_and_a_deadline(recording: RecordingTasksService) -> None:
    """The real service routes on ``x-goog-request-params`` (the emulator ignores it, so it is checked here)."""
    settings = ControlPlaneSettings(tasks_emulator_host=recording.host, tasks_project="p", tasks_location="l")
    name = TaskQueue(settings).push("q", {"kind": "job", "job_id": "job_0005", "seq": 0})
    assert name == "projects/p/locations/l/queues/q/tasks/1"
    [(metadata, remaining_s)] = recording.calls
    assert metadata["x-goog-request-params"] == "parent=projects/p/locations/l/queues/q"
    assert remaining_s is not None and 9.0 < remaining_s <= 11.0  # 10 s, as the wire rounds it
