"""The jobs API's route table: every path the enqueue function answers, the methods each path takes, the
endpoint that serves each, and what the OpenAPI document says of each operation.

The router (:func:`resolve`), the ``Allow`` header of a 405 and the document's ``paths``
(``shared.jobs.openapi``) all read :data:`ROUTES`, so none of them can drift from the others. Paths are
written as OpenAPI templates (``/v1/jobs/{job_id}``); werkzeug's :class:`~werkzeug.routing.Map` matches them.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

from werkzeug.exceptions import HTTPException
from werkzeug.routing import BaseConverter, Map, Rule

from shared.errors import MethodNotAllowed, NotFound

__all__ = ["AUTHED", "JOB_ID", "ROUTES", "Operation", "Param", "Reply", "Route", "resolve"]

_JOB_ID_REGEX = "[A-Za-z0-9_-]{1,64}"


@dataclass(frozen=True)
class Param:
    """An operation's parameter, as OpenAPI describes it."""

    name: str
    location: Literal["path", "header", "query"]
    schema: Mapping[str, Any]
    required: bool = False

    def openapi(self) -> dict[str, Any]:
        return {"name": self.name, "in": self.location, "required": self.required, "schema": dict(self.schema)}


@dataclass(frozen=True)
class Reply:
    """A documented success answer: ``schema`` names a component, or is an inline JSON Schema, or is None
    (no body)."""

    status: int
    description: str
    schema: str | Mapping[str, Any] | None = None
    media: str = "application/json"


@dataclass(frozen=True)
class Operation:
    """What the OpenAPI document says of one operation. ``errors`` are statuses answered with an
    ``ErrorBody``; ``body`` names the component of a required JSON request body; ``secured=False`` lifts
    the document's default security (no API key)."""

    replies: tuple[Reply, ...]
    summary: str | None = None
    errors: tuple[int, ...] = ()
    parameters: tuple[Param, ...] = ()
    body: str | None = None
    secured: bool = True


@dataclass(frozen=True)
class Route:
    """One method on one path, served by ``endpoint`` (the OpenAPI ``operationId`` when documented).

    ``doc`` is None for a route the public document leaves out: the agent-facing ones (``audience``
    ``"agent"``, served by ``functions.agent_reports``) and the bare root, an alias of ``POST /v1/jobs``.
    """

    method: str
    path: str
    endpoint: str
    doc: Operation | None = None
    audience: Literal["public", "agent"] = "public"


JOB_ID = Param("job_id", "path", {"type": "string", "pattern": f"^{_JOB_ID_REGEX}$"}, required=True)
AUTHED = (401, 429)  # every operation behind an API key can answer these
_SUBMIT_ERRORS = (400, 409, 413, 415, 422, 503, *AUTHED)
_COST_TOTALS = {"type": "object", "required": ["billed_usd", "billed_gpu_hours", "cold_starts", "idle_fraction"]}

ROUTES: tuple[Route, ...] = (
    Route(
        "POST",
        "/v1/jobs",
        "createJob",
        Operation(
            summary="Submit a job",
            parameters=(Param("Idempotency-Key", "header", {"type": "string", "pattern": r"^[\x21-\x7e]{1,255}$"}),),
            body="JobCreate",
            replies=(
                Reply(202, "Queued", "JobView"),
                Reply(200, "Same idempotency key and body: the existing job", "JobView"),
            ),
            errors=_SUBMIT_ERRORS,
        ),
    ),
    Route("POST", "/", "createJob"),
    Route(
        "GET",
        "/v1/jobs/{job_id}",
        "getJob",
        Operation(
            summary="A job, with its output so far",
            parameters=(JOB_ID,),
            replies=(Reply(200, "The job", "JobView"),),
            errors=(404, *AUTHED),
        ),
    ),
    Route(
        "GET",
        "/v1/jobs/{job_id}/stream",
        "streamJob",
        Operation(
            summary="Server-Sent Events: status, output (id attempt-seq), done",
            parameters=(JOB_ID, Param("Last-Event-ID", "header", {"type": "string"})),
            replies=(Reply(200, "An event stream ending with `done`", {"type": "string"}, "text/event-stream"),),
            errors=(404, *AUTHED),
        ),
    ),
    Route(
        "POST",
        "/v1/jobs/{job_id}/cancel",
        "cancelJob",
        Operation(
            summary="Cancel a queued or running job; partial output is kept",
            parameters=(JOB_ID,),
            replies=(Reply(200, "The job", "JobView"),),
            errors=(404, 409, *AUTHED),
        ),
    ),
    Route(
        "POST",
        "/v1/jobs/{job_id}/callback/resend",
        "resendCallbacks",
        Operation(
            summary="Deliver the job's dead-lettered callbacks again",
            parameters=(JOB_ID,),
            replies=(Reply(200, "Event ids queued again", "Resent"),),
            errors=(404, *AUTHED),
        ),
    ),
    Route(
        "POST",
        "/enqueue",
        "seedEnqueue",
        Operation(
            summary="Seed-compatible submit (x-task-type: llm)",
            parameters=(Param("x-task-type", "header", {"type": "string", "enum": ["llm"]}, required=True),),
            body="SeedJob",
            replies=(Reply(202, "Queued", "JobView"), Reply(200, "Existing job", "JobView")),
            errors=_SUBMIT_ERRORS,
        ),
    ),
    Route(
        "GET",
        "/v1/cost",
        "cost",
        Operation(
            summary="What the boxes cost over a window, per instance and model",
            parameters=(Param("since", "query", {"type": "string", "pattern": r"^[0-9]+(\.[0-9]+)?[smhd]$"}),),
            replies=(Reply(200, "Totals", _COST_TOTALS),),
            errors=(422, *AUTHED),
        ),
    ),
    Route(
        "GET",
        "/v1/openapi.json",
        "openapi",
        Operation(summary="This document", replies=(Reply(200, "OpenAPI 3.1", {"type": "object"}),), secured=False),
    ),
    # Only agents call these, each with a per-job report token instead of an API key.
    Route("POST", "/v1/reports", "reportBatch", audience="agent"),
    Route("POST", "/v1/jobs/{job_id}/events", "reportEvents", audience="agent"),
)


class _JobIdConverter(BaseConverter):
    regex = _JOB_ID_REGEX


def _rule(path: str) -> str:
    """``/v1/jobs/{job_id}`` → werkzeug's ``/v1/jobs/<job_id:job_id>`` (each parameter its own converter)."""
    return re.sub(r"\{(\w+)\}", r"<\1:\1>", path)


def _by_path(routes: tuple[Route, ...]) -> dict[str, dict[str, Route]]:
    """Path → method → route, methods in table order (the order ``Allow`` lists them)."""
    grouped: dict[str, dict[str, Route]] = {}
    for route in routes:
        grouped.setdefault(route.path, {})[route.method] = route
    return grouped


_BY_PATH = _by_path(ROUTES)

# Methods are matched here, not by werkzeug: its rules add HEAD to every GET, and Allow must say exactly
# what the table says. Slashes are normalised before matching, so neither setting can answer a redirect.
_MAP = Map(
    [Rule(_rule(path), endpoint=path) for path in _BY_PATH],
    converters={"job_id": _JobIdConverter},
    strict_slashes=False,
    merge_slashes=False,
)
_ADAPTER = _MAP.bind("localhost")


def resolve(method: str, path: str) -> tuple[Route, Mapping[str, str]]:
    """The route serving ``method`` on ``path`` and the path's parameters.

    Raises :class:`NotFound` (``no_route``) for a path the table lacks, and :class:`MethodNotAllowed`,
    carrying the path's methods, for a known path with another method. Trailing slashes are ignored.
    """
    try:
        template, args = _ADAPTER.match(path.rstrip("/") or "/", method=method)
    except HTTPException:
        raise NotFound(f"no route {method} {path}", code="no_route") from None
    routes = _BY_PATH[template]
    route = routes.get(method)
    if route is None:
        allow = list(routes)
        raise MethodNotAllowed(f"{method} is not allowed on {path}; use {', '.join(allow)}", allow=allow)
    return route, args
