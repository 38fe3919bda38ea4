"""dispatch: the Cloud Tasks target. One task = one job dispatch, one lease check, one callback try, or one
event delivery try (webhook or Pub/Sub).

Answers 2xx once the task's work is done or re-scheduled (snoozed); 5xx only when it could not
even re-schedule, so the queue redelivers the same task. An authenticated task whose body does not
parse (see ``shared/jobs/tasks.py``) is answered 2xx too, ``{"outcome": "dropped"}``, and logged:
a redelivery cannot repair it, and the queue would redeliver it forever.
"""

from __future__ import annotations

import logging

import flask
import functions_framework

from functions.edge import control_plane, handle_errors, json_response, read_body
from shared.controlplane import ControlPlane
from shared.errors import InvalidRequest
from shared.jobs.callbacks import deliver_callback
from shared.jobs.dispatcher import dispatch_job
from shared.jobs.lifecycle import check_lease
from shared.jobs.tasks import CallbackTask, EventTask, JobTask, QueueTask, parse_task
from shared.observability.delivery import deliver_event
from shared.security.headers import printable
from shared.security.oidc import verify_oidc
from shared.security.signing import TASK_SIGNATURE_HEADER, verify_task
from shared.settings import ControlPlaneSettings

__all__ = ["dispatch"]

log = logging.getLogger("gpuq.dispatch")

MAX_TASK_BYTES = 65536


@functions_framework.http
@handle_errors
def dispatch(request: flask.Request) -> flask.Response:
    cp = control_plane()
    raw = read_body(request, MAX_TASK_BYTES)
    _authenticate(request, cp.settings, raw)
    try:
        task = parse_task(raw)
    except InvalidRequest as exc:
        # Ours (it is authenticated) yet unreadable: acknowledged, so the queue stops redelivering it.
        log.warning(
            "dropped a malformed task %s (retries %s): %s",
            printable(request.headers.get("X-CloudTasks-TaskName", "-"), 100),
            printable(request.headers.get("X-CloudTasks-TaskRetryCount", "-"), 10),
            exc.message,
        )
        return json_response({"outcome": "dropped", "reason": exc.message})
    return json_response({"outcome": _run(cp, task)})


def _authenticate(request: flask.Request, s: ControlPlaneSettings, raw: bytes) -> None:
    if s.tasks_service_account:  # production: the OIDC token Cloud Tasks attaches
        verify_oidc(
            request.headers,
            audience=s.dispatch_target(),
            service_account=s.tasks_service_account,
            certs_url=s.oidc_certs_url,
        )
    else:  # dev: the emulator sends no auth; our queue client signs each task
        verify_task(s.task_secret, request.headers.get(TASK_SIGNATURE_HEADER, ""), raw)


def _run(cp: ControlPlane, task: QueueTask) -> str:
    if isinstance(task, JobTask):
        return dispatch_job(cp, task.job_id, task.seq)
    if isinstance(task, CallbackTask):
        return deliver_callback(cp, task.job_id, task.event_id, task.type, task.try_number)
    if isinstance(task, EventTask):
        return deliver_event(cp, task)
    return check_lease(cp, task.job_id, task.attempt)
