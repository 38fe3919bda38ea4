"""Cloud Tasks queue client: create tasks, snooze, pause/resume.

The real ``google-cloud-tasks`` client talks to the real service in production and to the
``gcloud-tasks-emulator`` in dev and tests. Neither de-duplicates for us on the emulator and the
emulator applies no backoff, so "not ready yet" is a *new* task scheduled later (a snooze), and the
job store, not the queue, decides whether a delivery is still current (``dispatch_seq``).

This module moves JSON objects and knows nothing of their content: what each kind of task carries,
and which queue it goes to, is typed in ``shared/jobs/tasks.py``, which every producer goes through.

``google.cloud.tasks`` is imported lazily: it is most of a function's import time.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from shared.errors import QueueUnavailable
from shared.security.signing import TASK_SIGNATURE_HEADER, sign_task
from shared.settings import ControlPlaneSettings

if TYPE_CHECKING:
    from google.cloud.tasks_v2 import CloudTasksClient

__all__ = ["TaskQueue"]

log = logging.getLogger("gpuq.queue")

CREATE_TIMEOUT_S = 10.0
_CREATE_TASK = "/google.cloud.tasks.v2.CloudTasks/CreateTask"

_HTTP_POST = 1  # google.cloud.tasks.v2.HttpMethod.POST


@dataclass(frozen=True)
class _CreateTaskStub:
    """CreateTask as raw protobuf on the client's own channel (its credentials in production)."""

    call: Callable[..., Any]  # (CreateTaskRequest, timeout=, metadata=) -> Task, both raw protobuf
    request_type: Callable[..., Any]
    rpc_error: type[Exception]


def _rpc_detail(exc: Exception) -> str:
    details = getattr(exc, "details", None)  # grpc.Call.details(): the status message
    return str(details()) if callable(details) else type(exc).__name__


class TaskQueue:
    """Pushes JSON tasks to the dispatch function through Cloud Tasks."""

    def __init__(self, settings: ControlPlaneSettings) -> None:
        self._settings = settings
        self._client: CloudTasksClient | None = None
        self._stub: _CreateTaskStub | None = None
        self._lock = threading.Lock()

    @property
    def client(self) -> CloudTasksClient:
        with self._lock:
            if self._client is None:
                self._client = self._connect()
            return self._client

    def _connect(self) -> CloudTasksClient:
        from google.cloud.tasks_v2 import CloudTasksClient

        host = self._settings.tasks_emulator_host
        if not host:
            return CloudTasksClient()
        import grpc
        from google.cloud.tasks_v2.services.cloud_tasks.transports import CloudTasksGrpcTransport

        channel = grpc.insecure_channel(host)
        return CloudTasksClient(transport=CloudTasksGrpcTransport(channel=channel))

    def queue_path(self, queue: str) -> str:
        s = self._settings
        return f"projects/{s.tasks_project}/locations/{s.tasks_location}/queues/{queue}"

    def ensure_queues(self) -> None:
        """Create our queues if missing (dev/emulator; production uses infra/ scripts)."""
        from google.cloud.tasks_v2 import Queue

        s = self._settings
        parent = f"projects/{s.tasks_project}/locations/{s.tasks_location}"
        existing = {q.name for q in self.client.list_queues(parent=parent)}
        for name in (s.job_queue, s.callback_queue, s.lease_queue):
            path = self.queue_path(name)
            if path not in existing:
                self.client.create_queue(parent=parent, queue=Queue(name=path))

    def push(self, queue: str, payload: Mapping[str, Any], *, delay_s: float = 0.0) -> str:
        """Create a task that POSTs ``payload`` to dispatch after ``delay_s``. Returns its name.

        The one queue call on the enqueue path, so it skips the GAPIC layer (proto-plus messages,
        retry and timeout wrappers, a logging interceptor): that layer was a fifth of an enqueue's
        CPU, the gRPC call itself is less. Same channel (credentials included), same request, same
        routing header and timeout as ``client.create_task``.
        """
        s = self._settings
        try:
            stub = self._stub or self._create_stub()
        except Exception as exc:  # no credentials, no transport: nothing was sent
            raise QueueUnavailable(f"could not reach the queue service: {type(exc).__name__}") from exc
        body = json.dumps(payload, separators=(",", ":")).encode()
        parent = self.queue_path(queue)
        request = stub.request_type(parent=parent)
        http = request.task.http_request
        http.url = s.dispatch_target()
        http.http_method = _HTTP_POST
        http.headers["Content-Type"] = "application/json"
        if s.task_secret:
            http.headers[TASK_SIGNATURE_HEADER] = sign_task(s.task_secret, body)
        http.body = body
        if s.tasks_service_account:
            http.oidc_token.service_account_email = s.tasks_service_account
            http.oidc_token.audience = s.dispatch_target()
        if delay_s > 0:
            request.task.schedule_time.FromNanoseconds(int((time.time() + delay_s) * 1e9))
        # The routing header the GAPIC client adds from ``parent``: the real service routes on it.
        metadata = (("x-goog-request-params", "parent=" + quote(parent, safe="/")),)
        try:
            created = stub.call(request, timeout=CREATE_TIMEOUT_S, metadata=metadata)
        except stub.rpc_error as exc:
            raise QueueUnavailable(f"could not create a task on {queue}: {_rpc_detail(exc)}") from exc
        except Exception as exc:  # a channel that cannot even start the call
            raise QueueUnavailable(f"could not create a task on {queue}: {type(exc).__name__}") from exc
        return str(created.name)

    def _create_stub(self) -> _CreateTaskStub:
        import grpc
        from google.cloud.tasks_v2.services.cloud_tasks.transports import CloudTasksGrpcTransport
        from google.cloud.tasks_v2.types import cloudtasks, task

        transport = self.client.transport
        if not isinstance(transport, CloudTasksGrpcTransport):
            raise TypeError(f"TaskQueue.push needs the gRPC transport, not {type(transport).__name__}")
        request_type = cloudtasks.CreateTaskRequest.pb()
        call = transport.grpc_channel.unary_unary(
            _CREATE_TASK,
            request_serializer=request_type.SerializeToString,
            response_deserializer=task.Task.pb().FromString,
        )
        self._stub = _CreateTaskStub(call=call, request_type=request_type, rpc_error=grpc.RpcError)
        return self._stub

    def pause(self, queue: str) -> None:
        self.client.pause_queue(name=self.queue_path(queue))

    def resume(self, queue: str) -> None:
        self.client.resume_queue(name=self.queue_path(queue))

    def count_tasks(self, queue: str) -> int:
        return len(list(self.client.list_tasks(parent=self.queue_path(queue))))
