"""The jobs API's route table: every path the enqueue function answers, the methods each path takes, the
endpoint that serves each, and what the OpenAPI document says of each operation.

The router (:func:`resolve`), the ``Allow`` header of a 405 and the document's ``paths``
(``shared.jobs.openapi``) all read :data:`ROUTES`, so none of them can drift from the others. Paths are
written as OpenAPI templates (``/v1/jobs/{job_id}``); werkzeug's :class:`~werkzeug.routing.Map` matches them.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

from werkzeug.exceptions import HTTPException
from werkzeug.routing import BaseConverter, Map, Rule

from shared.errors import MethodNotAllowed, NotFound
from shared.jobs.routes_openai import OPENAI_ROUTES
from shared.jobs.routing import AUTHED, JOB_ID, JOB_ID_REGEX, Operation, Param, Reply, Route
from shared.observability.event_log import CURSOR_PATTERN, MAX_LIMIT

__all__ = ["AUTHED", "JOB_ID", "ROUTES", "Operation", "Param", "Reply", "Route", "resolve"]


_SUBMIT_ERRORS = (400, 409, 413, 415, 422, 503, *AUTHED)
_COST_TOTALS = {"type": "object", "required": ["billed_usd", "billed_gpu_hours", "cold_starts", "idle_fraction"]}

_MODEL = {
    "type": "object",
    "required": ["id", "object", "owned_by"],
    "properties": {"id": {"type": "string"}, "object": {"const": "model"}, "owned_by": {"type": "string"}},
}
_MODEL_LIST = {"type": "object", "required": ["object", "data"], "properties": {"data": {"items": _MODEL}}}
_INSTANCE_LIST = {
    "type": "object",
    "required": ["instances"],
    "properties": {
        "instances": {
            "type": "array",
            "items": {
                "type": "object",
                "required": ["id", "pool", "provider", "state", "models", "running_jobs", "price_per_hour", "cost_usd"],
            },
        }
    },
}

_EVENT = {
    "type": "object",
    "required": ["type", "id", "time", "source", "subject", "idempotency_key", "data"],
    "properties": {
        "type": {"type": "string"},
        "id": {"type": "string"},
        "time": {"type": "string", "format": "date-time"},
        "source": {"type": "string"},
        "subject": {"type": "string"},
        "idempotency_key": {"type": "string"},
        "data": {"type": "object"},
    },
}
_EVENT_LIST = {
    "type": "object",
    "required": ["object", "data", "has_more", "next"],
    "properties": {
        "object": {"const": "list"},
        "data": {"type": "array", "items": _EVENT},
        "has_more": {"type": "boolean"},
        "next": {"type": "string", "description": "Pass as `since` to read what came after"},
    },
}
_EVENT_TYPES_PATTERN = r"^[a-z_]+\.([a-z_]+)?(,[a-z_]+\.([a-z_]+)?)*$"

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
        "/v1/models",
        "listModels",
        Operation(
            summary="The models the pools serve (OpenAI's list shape; owned_by is the pool)",
            replies=(Reply(200, "Models", _MODEL_LIST),),
            errors=AUTHED,
        ),
    ),
    Route(
        "GET",
        "/v1/models/{model_id}",
        "getModel",
        Operation(
            summary="One served model",
            parameters=(Param("model_id", "path", {"type": "string"}, required=True),),
            replies=(Reply(200, "The model", _MODEL),),
            errors=(404, *AUTHED),
        ),
    ),
    Route(
        "GET",
        "/v1/instances",
        "listInstances",
        Operation(
            summary="The box registry: every box of every pool, its state, jobs, price and cost",
            parameters=(
                Param("pool", "query", {"type": "string"}),
                Param("state", "query", {"type": "string", "enum": ["stopped", "starting", "ready", "draining"]}),
            ),
            replies=(Reply(200, "Boxes", _INSTANCE_LIST),),
            errors=(422, *AUTHED),
        ),
    ),
    Route(
        "GET",
        "/v1/events",
        "listEvents",
        Operation(
            summary="Recent events (job, instance, cost, health), oldest first; poll with `since` = the last `next`",
            parameters=(
                Param("since", "query", {"type": "string", "pattern": CURSOR_PATTERN}),
                Param("type", "query", {"type": "string", "pattern": _EVENT_TYPES_PATTERN}),
                Param("subject", "query", {"type": "string", "pattern": r"^[\x21-\x7e]{1,200}$"}),
                Param("limit", "query", {"type": "integer", "minimum": 1, "maximum": MAX_LIMIT}),
            ),
            replies=(Reply(200, "A page of events", _EVENT_LIST),),
            errors=(400, 422, *AUTHED),
        ),
    ),
    Route(
        "GET",
        "/metrics",
        "metrics",
        Operation(
            summary="Prometheus metrics, read from the store (bearer GPUQ_METRICS_TOKEN or an API key)",
            replies=(Reply(200, "Prometheus text format 0.0.4", {"type": "string"}, "text/plain"),),
            errors=AUTHED,
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
    # The dashboard (functions.ui): pages for a person, authenticated by its session cookie. Not an API:
    # left out of the document (so not fuzzed by the contract test; tests/integration/test_dashboard.py).
    Route("GET", "/ui", "uiPage", audience="browser"),
    Route("POST", "/ui/login", "uiLogin", audience="browser"),
    Route("POST", "/ui/logout", "uiLogout", audience="browser"),
    Route("GET", "/ui/panels", "uiPanels", audience="browser"),
    Route("GET", "/ui/static/{asset_name}", "uiStatic", audience="browser"),
    *OPENAI_ROUTES,
)


class _JobIdConverter(BaseConverter):
    regex = JOB_ID_REGEX


class _ModelIdConverter(BaseConverter):
    """A model name as Ollama and Hugging Face write them: ``llama3.2:1b``, ``hf.co/org/model:Q4``."""

    regex = "[A-Za-z0-9._:/@+-]{1,200}"


class _FileIdConverter(BaseConverter):
    regex = "file-[A-Za-z0-9_-]{1,64}"


class _BatchIdConverter(BaseConverter):
    regex = "batch_[A-Za-z0-9_-]{1,64}"


class _AssetConverter(BaseConverter):
    regex = "[a-z0-9][a-z0-9._-]{0,63}"


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
    converters={
        "job_id": _JobIdConverter,
        "model_id": _ModelIdConverter,
        "file_id": _FileIdConverter,
        "batch_id": _BatchIdConverter,
        "asset_name": _AssetConverter,
    },
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
