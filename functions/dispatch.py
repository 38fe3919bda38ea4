"""dispatch: the Cloud Tasks target. One task = one job dispatch, one lease check, or one callback try.

Answers 2xx once the task's work is done or re-scheduled (snoozed); 5xx only when it could not
even re-schedule, so the queue redelivers the same task.
"""

from __future__ import annotations

import flask
import functions_framework

from functions.edge import control_plane, handle_errors, json_response, read_body, read_json
from shared.errors import ValidationFailed
from shared.jobs.callbacks import deliver_callback
from shared.jobs.dispatcher import dispatch_job
from shared.jobs.lifecycle import check_lease
from shared.security.oidc import verify_oidc
from shared.security.signing import TASK_SIGNATURE_HEADER, verify_task

__all__ = ["dispatch"]


@functions_framework.http
@handle_errors
def dispatch(request: flask.Request) -> flask.Response:
    cp = control_plane()
    raw = read_body(request, 65536)
    s = cp.settings
    if s.tasks_service_account:  # production: the OIDC token Cloud Tasks attaches
        verify_oidc(
            request.headers,
            audience=s.dispatch_target(),
            service_account=s.tasks_service_account,
            certs_url=s.oidc_certs_url,
        )
    else:  # dev: the emulator sends no auth; our queue client signs each task
        verify_task(s.task_secret, request.headers.get(TASK_SIGNATURE_HEADER, ""), raw)
    body = read_json(request, 65536)
    if not isinstance(body, dict):
        raise ValidationFailed("task body must be a JSON object")
    kind = body.get("kind")
    job_id = body.get("job_id")
    if not isinstance(job_id, str):
        raise ValidationFailed("job_id: required")
    if kind == "job":
        outcome = dispatch_job(cp, job_id, int(body.get("seq", 0)))
    elif kind == "lease":
        outcome = check_lease(cp, job_id, int(body.get("attempt", 0)))
    elif kind == "callback":
        outcome = deliver_callback(cp, job_id, str(body["event_id"]), str(body["type"]), int(body.get("try", 1)))
    else:
        raise ValidationFailed(f"unknown task kind {kind!r}")
    return json_response({"outcome": outcome})
