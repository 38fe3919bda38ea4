"""agent_reports: the jobs API endpoints only agents call, with a per-job report token instead of an API key.

``POST /v1/reports``: a box's reports for all its jobs in one request (a per-job token in each entry);
``POST /v1/jobs/{id}/events``: one job's report (``Authorization: Bearer <report token>``). Both are
served by the enqueue function, at the URLs ``shared.jobs.routes`` gives them (endpoints ``reportBatch``
and ``reportEvents``); nothing here is in the public OpenAPI document.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

import flask
from pydantic import BaseModel, ValidationError

from functions.edge import control_plane, json_response, read_json
from shared.errors import ValidationFailed
from shared.jobs.events import Report, ReportBatch
from shared.jobs.intake import validation_message
from shared.jobs.reports import apply_report, apply_reports
from shared.security.keys import bearer

__all__ = ["ENDPOINTS", "report_batch", "report_events"]

_M = TypeVar("_M", bound=BaseModel)


def _agent_body(request: flask.Request, model: type[_M]) -> _M:
    """An agent's report body (larger than a job's: it carries output), parsed into ``model``."""
    body = read_json(request, control_plane().settings.max_body_bytes * 8)
    try:
        return model.model_validate(body)
    except ValidationError as exc:
        raise ValidationFailed(validation_message(exc)) from None


def report_batch(request: flask.Request) -> flask.Response:
    """``POST /v1/reports``: one ack per entry; each entry's token speaks for its own job only."""
    batch = _agent_body(request, ReportBatch)
    return json_response(apply_reports(control_plane(), batch).model_dump(mode="json"))


def report_events(request: flask.Request, job_id: str) -> flask.Response:
    """``POST /v1/jobs/{job_id}/events``: one job's report, its token in the ``Authorization`` header."""
    report = _agent_body(request, Report)
    ack = apply_report(control_plane(), job_id, bearer(request.headers), report)
    return json_response(ack.model_dump(mode="json"))


ENDPOINTS: dict[str, Callable[..., flask.Response]] = {"reportBatch": report_batch, "reportEvents": report_events}
"""The route table's agent endpoints (``audience="agent"``) → their handlers, called with the path's parameters."""
