"""enqueue: the public jobs API (and the seed-compatible ``POST /enqueue``).

Routes: ``POST /v1/jobs``, ``GET /v1/jobs/{id}``, ``GET /v1/jobs/{id}/stream``,
``POST /v1/jobs/{id}/cancel``, ``POST /v1/jobs/{id}/callback/resend``; and the agent's
``POST /v1/jobs/{id}/events`` (per-job token), and ``POST /v1/reports``: a box's
reports for all its jobs in one request (a per-job token in each entry).
"""

from __future__ import annotations

import functools
import re
from typing import TypeVar

import flask
import functions_framework
from pydantic import BaseModel, ValidationError

from functions.edge import caller, control_plane, handle_errors, json_response, read_json
from shared.errors import InvalidRequest, MethodNotAllowed, NotFound, ValidationFailed
from shared.jobs.callbacks import resend_failed
from shared.jobs.events import Report, ReportBatch
from shared.jobs.intake import cancel_job, get_job, parse_job_create, submit_job, validation_message
from shared.jobs.reports import apply_report, apply_reports
from shared.jobs.streaming import sse_events
from shared.jobs.views import job_view
from shared.money.costreport import cost_report, parse_since
from shared.security.headers import printable
from shared.security.keys import bearer

__all__ = ["enqueue"]

_JOB = re.compile(r"^/v1/jobs/(?P<id>[A-Za-z0-9_\-]{1,64})(?P<rest>/stream|/cancel|/events|/callback/resend)?/?$")


def _create(request: flask.Request, owner: str, body: object) -> flask.Response:
    cp = control_plane()
    job_request = parse_job_create(body)
    job, created = submit_job(cp, owner, job_request, idempotency_header=request.headers.get("Idempotency-Key"))
    return json_response(job.public(output=None), 202 if created else 200)


def _seed_enqueue(request: flask.Request) -> flask.Response:
    """The design this project grew from: ``x-task-type: llm`` and ``{prompt, callbackUrl, model}``."""
    cp = control_plane()
    owner = caller(request)
    task_type = request.headers.get("x-task-type", "")
    if task_type != "llm":
        raise InvalidRequest(
            f"unsupported x-task-type {task_type!r}: only 'llm' is accepted", code="unsupported_task_type"
        )
    body = read_json(request, cp.settings.max_body_bytes)
    if not isinstance(body, dict):
        raise ValidationFailed("the body must be a JSON object", code="invalid_body")
    known = {"prompt", "callbackUrl", "model"}
    unknown = sorted(set(body) - known)
    if unknown:
        raise ValidationFailed(f"{', '.join(unknown)}: unknown field")
    mapped = {"prompt": body.get("prompt"), "model": body.get("model")}
    if body.get("callbackUrl") is not None:
        mapped["callback_url"] = body["callbackUrl"]
    return _create(request, owner, mapped)


_M = TypeVar("_M", bound=BaseModel)


def _agent_body(request: flask.Request, model: type[_M]) -> _M:
    """An agent's report body (larger than a job's: it carries output), parsed into ``model``."""
    body = read_json(request, control_plane().settings.max_body_bytes * 8)
    try:
        return model.model_validate(body)
    except ValidationError as exc:
        raise ValidationFailed(validation_message(exc)) from None


def _reports(request: flask.Request) -> flask.Response:
    batch = _agent_body(request, ReportBatch)
    return json_response(apply_reports(control_plane(), batch).model_dump(mode="json"))


def _job_route(request: flask.Request, job_id: str, rest: str) -> flask.Response:
    cp = control_plane()
    if rest == "/events" and request.method == "POST":
        report = _agent_body(request, Report)
        ack = apply_report(cp, job_id, bearer(request.headers), report)
        return json_response(ack.model_dump(mode="json"))
    owner = caller(request)
    if rest == "" and request.method == "GET":
        job = get_job(cp, owner, job_id)
        return json_response(job_view(cp, job))
    if rest == "/stream" and request.method == "GET":
        job = get_job(cp, owner, job_id)
        events = sse_events(cp, job, request.headers.get("Last-Event-ID"))
        return flask.Response(
            flask.stream_with_context(events),
            mimetype="text/event-stream",
            headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
        )
    if rest == "/cancel" and request.method == "POST":
        job = cancel_job(cp, owner, job_id)
        return json_response(job_view(cp, job))
    if rest == "/callback/resend" and request.method == "POST":
        job = get_job(cp, owner, job_id)
        return json_response({"resent": resend_failed(cp, job)})
    raise NotFound(f"no route {request.method} {request.path}", code="no_route")


_METHODS = {"": ["GET"], "/stream": ["GET"], "/cancel": ["POST"], "/events": ["POST"], "/callback/resend": ["POST"]}
_FIXED = {
    "/v1/jobs": ["POST"],
    "/enqueue": ["POST"],
    "/v1/openapi.json": ["GET"],
    "/v1/cost": ["GET"],
    "/v1/reports": ["POST"],
}


def _check_method(request: flask.Request, allowed: list[str]) -> None:
    if request.method not in allowed:
        raise MethodNotAllowed(
            f"{request.method} is not allowed on {request.path}; use {', '.join(allowed)}", allow=allowed
        )


@functools.cache
def _openapi() -> dict[str, object]:
    from shared.jobs.openapi import jobs_openapi

    return jobs_openapi()


@functions_framework.http
@handle_errors
def enqueue(request: flask.Request) -> flask.Response:
    path = request.path.rstrip("/") or "/"
    if path in _FIXED:
        _check_method(request, _FIXED[path])
    if path in ("/v1/jobs", "/") and request.method == "POST":
        cp = control_plane()
        owner = caller(request)
        return _create(request, owner, read_json(request, cp.settings.max_body_bytes))
    if path == "/enqueue" and request.method == "POST":
        return _seed_enqueue(request)
    if path == "/v1/reports" and request.method == "POST":
        return _reports(request)
    if path == "/v1/openapi.json" and request.method == "GET":
        return json_response(_openapi())
    if path == "/v1/cost" and request.method == "GET":
        caller(request)
        unknown = sorted(set(request.args) - {"since"})
        if unknown:
            raise ValidationFailed(f"{', '.join(printable(u, 40) for u in unknown)}: unknown query parameter")
        return json_response(cost_report(control_plane(), parse_since(request.args.get("since", "24h"))))
    match = _JOB.match(request.path)
    if match:
        _check_method(request, _METHODS[match["rest"] or ""])
        return _job_route(request, match["id"], match["rest"] or "")
    raise NotFound(f"no route {request.method} {request.path}", code="no_route")
