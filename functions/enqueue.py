"""enqueue: the public jobs API (and the seed-compatible ``POST /enqueue``), routed by ``shared.jobs.routes``.

Routes: ``POST /v1/jobs``, ``GET /v1/jobs/{id}``, ``GET /v1/jobs/{id}/stream``,
``POST /v1/jobs/{id}/cancel``, ``POST /v1/jobs/{id}/callback/resend``, ``GET /v1/cost``,
``GET /v1/models[/{id}]``, ``GET /v1/instances``, ``GET /v1/events``,
``GET /v1/openapi.json``. The same deployed function also serves the routes only agents call
(``POST /v1/reports``, ``POST /v1/jobs/{id}/events``), whose handlers live in ``functions.agent_reports``,
and the dashboard under ``/ui`` (``functions.ui``).
A known path asked with another method answers 405 with the table's ``Allow``.
"""

from __future__ import annotations

import functools
from collections.abc import Callable

import flask
import functions_framework

from functions import agent_reports, openai_front, ui
from functions.edge import caller, control_plane, handle_errors, json_response, read_json
from shared.boxes.listing import list_instances, list_models, model_entry
from shared.errors import InvalidRequest, ValidationFailed
from shared.jobs.callbacks import resend_failed
from shared.jobs.intake import cancel_job, get_job, parse_job_create, submit_job
from shared.jobs.routes import resolve
from shared.jobs.streaming import sse_events
from shared.jobs.views import job_view
from shared.money.costreport import cost_report, parse_since
from shared.observability.event_log import parse_event_query, read_events
from shared.observability.metrics import CONTENT_TYPE as METRICS_CONTENT_TYPE
from shared.observability.metrics import render as render_metrics
from shared.security.headers import printable

__all__ = ["ENDPOINTS", "enqueue"]


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


def _create_job(request: flask.Request) -> flask.Response:
    owner = caller(request)
    return _create(request, owner, read_json(request, control_plane().settings.max_body_bytes))


def _get_job(request: flask.Request, job_id: str) -> flask.Response:
    cp = control_plane()
    job = get_job(cp, caller(request), job_id)
    return json_response(job_view(cp, job))


def _stream_job(request: flask.Request, job_id: str) -> flask.Response:
    cp = control_plane()
    job = get_job(cp, caller(request), job_id)
    events = sse_events(cp, job, request.headers.get("Last-Event-ID"))
    return flask.Response(
        flask.stream_with_context(events),
        mimetype="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )


def _cancel_job(request: flask.Request, job_id: str) -> flask.Response:
    cp = control_plane()
    job = cancel_job(cp, caller(request), job_id)
    return json_response(job_view(cp, job))


def _resend_callbacks(request: flask.Request, job_id: str) -> flask.Response:
    cp = control_plane()
    job = get_job(cp, caller(request), job_id)
    return json_response({"resent": resend_failed(cp, job)})


def _cost(request: flask.Request) -> flask.Response:
    caller(request)
    unknown = sorted(set(request.args) - {"since"})
    if unknown:
        raise ValidationFailed(f"{', '.join(printable(u, 40) for u in unknown)}: unknown query parameter")
    return json_response(cost_report(control_plane(), parse_since(request.args.get("since", "24h"))))


def _models(request: flask.Request) -> flask.Response:
    caller(request)
    return json_response(list_models(control_plane()))


def _model(request: flask.Request, model_id: str) -> flask.Response:
    caller(request)
    return json_response(model_entry(control_plane(), model_id))


def _metrics(request: flask.Request) -> flask.Response:
    cp = control_plane()
    token = cp.settings.metrics_token
    if not (token and request.headers.get("Authorization", "") == f"Bearer {token}"):
        caller(request)  # else an API key, as every read of the API
    return flask.Response(render_metrics(cp), headers={"Content-Type": METRICS_CONTENT_TYPE})


def _events(request: flask.Request) -> flask.Response:
    caller(request)
    return json_response(read_events(control_plane(), parse_event_query(request.args)))


def _instances(request: flask.Request) -> flask.Response:
    caller(request)
    unknown = sorted(set(request.args) - {"pool", "state"})
    if unknown:
        raise ValidationFailed(f"{', '.join(printable(u, 40) for u in unknown)}: unknown query parameter")
    return json_response(
        list_instances(control_plane(), pool=request.args.get("pool"), state=request.args.get("state"))
    )


@functools.cache
def _openapi_document() -> dict[str, object]:
    from shared.jobs.openapi import jobs_openapi  # builds pydantic schemas: only when first asked for

    return jobs_openapi()


def _openapi(request: flask.Request) -> flask.Response:
    return json_response(_openapi_document())


ENDPOINTS: dict[str, Callable[..., flask.Response]] = {
    "createJob": _create_job,
    "seedEnqueue": _seed_enqueue,
    "getJob": _get_job,
    "streamJob": _stream_job,
    "cancelJob": _cancel_job,
    "resendCallbacks": _resend_callbacks,
    "cost": _cost,
    "listModels": _models,
    "getModel": _model,
    "listInstances": _instances,
    "listEvents": _events,
    "metrics": _metrics,
    "openapi": _openapi,
    **agent_reports.ENDPOINTS,
    **openai_front.ENDPOINTS,
    **ui.ENDPOINTS,
}
"""Every endpoint of the route table → its handler, called with the request and the path's parameters."""


@functions_framework.http
@handle_errors
def enqueue(request: flask.Request) -> flask.Response:
    route, args = resolve(request.method, request.path)
    return ENDPOINTS[route.endpoint](request, **args)
