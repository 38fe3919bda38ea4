"""Cloud Tasks queue client: create tasks, snooze, pause/resume.

The real ``google-cloud-tasks`` client talks to the real service in production and to the
``gcloud-tasks-emulator`` in dev and tests. Neither de-duplicates for us on the emulator and the
emulator applies no backoff, so "not ready yet" is a *new* task scheduled later (a snooze), and the
job store, not the queue, decides whether a delivery is still current (``dispatch_seq``).

``google.cloud.tasks`` is imported lazily: it is most of a function's import time.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from typing import TYPE_CHECKING, Any

from shared.errors import QueueUnavailable
from shared.security import TASK_SIGNATURE_HEADER, sign_task
from shared.settings import ControlPlaneSettings

if TYPE_CHECKING:
    from google.cloud.tasks_v2 import CloudTasksClient

__all__ = ["TaskQueue"]

log = logging.getLogger("gpuq.queue")


class TaskQueue:
    """Pushes JSON tasks to the dispatch function through Cloud Tasks."""

    def __init__(self, settings: ControlPlaneSettings) -> None:
        self._settings = settings
        self._client: CloudTasksClient | None = None
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

    def push(self, queue: str, payload: dict[str, Any], *, delay_s: float = 0.0) -> str:
        """Create a task that POSTs ``payload`` to dispatch after ``delay_s``. Returns its name."""
        from google.api_core import exceptions as gexc
        from google.cloud.tasks_v2 import HttpMethod, HttpRequest, OidcToken, Task
        from google.protobuf import timestamp_pb2

        s = self._settings
        body = json.dumps(payload, separators=(",", ":")).encode()
        headers = {"Content-Type": "application/json"}
        if s.task_secret:
            headers[TASK_SIGNATURE_HEADER] = sign_task(s.task_secret, body)
        request = HttpRequest(url=s.dispatch_target(), http_method=HttpMethod.POST, headers=headers, body=body)
        if s.tasks_service_account:
            request.oidc_token = OidcToken(service_account_email=s.tasks_service_account,
                                           audience=s.dispatch_target())
        task = Task(http_request=request)
        if delay_s > 0:
            ts = timestamp_pb2.Timestamp()
            ts.FromNanoseconds(int((time.time() + delay_s) * 1e9))
            task.schedule_time = ts
        try:
            created = self.client.create_task(parent=self.queue_path(queue), task=task, timeout=10.0)
        except gexc.GoogleAPICallError as exc:
            raise QueueUnavailable(f"could not create a task on {queue}: {exc.message}") from exc
        except Exception as exc:  # grpc transport errors are not GoogleAPICallError on every path
            raise QueueUnavailable(f"could not create a task on {queue}: {type(exc).__name__}") from exc
        return str(created.name)

    def pause(self, queue: str) -> None:
        self.client.pause_queue(name=self.queue_path(queue))

    def resume(self, queue: str) -> None:
        self.client.resume_queue(name=self.queue_path(queue))

    def count_tasks(self, queue: str) -> int:
        return len(list(self.client.list_tasks(parent=self.queue_path(queue))))
