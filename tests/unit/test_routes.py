"""The jobs API's one route table: it feeds the router, the 405s' ``Allow`` and the OpenAPI ``paths``.

In-process: routing and the method check answer before any handler builds a control plane.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import cast

import flask
import pytest

from functions import agent_reports, enqueue, trigger
from shared.errors import MethodNotAllowed, NotFound
from shared.jobs.openapi import jobs_openapi
from shared.jobs.routes import ROUTES, resolve

METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "TRACE")
APP = flask.Flask(__name__)
Handler = Callable[[flask.Request], flask.Response]
# functions_framework.http returns the function itself; its annotations do not say so.
ENQUEUE, TRIGGER = cast(Handler, enqueue.enqueue), cast(Handler, trigger.trigger)


def table_methods(path: str) -> list[str]:
    return [r.method for r in ROUTES if r.path == path]


def concrete(path: str) -> str:
    ids = {
        "{job_id}": "job_x",
        "{model_id}": "llama3.2:1b",
        "{file_id}": "file-x1",
        "{batch_id}": "batch_x1",
        "{asset_name}": "dashboard.js",
    }
    for template, value in ids.items():
        path = path.replace(template, value)
    return path


def call(fn: Handler, method: str, path: str) -> flask.Response:
    with APP.test_request_context(path, method=method):
        return fn(flask.request)


def test_every_route_has_a_handler_and_every_handler_a_route() -> None:
    assert set(enqueue.ENDPOINTS) == {r.endpoint for r in ROUTES}
    assert len({(r.method, r.path) for r in ROUTES}) == len(ROUTES)


def test_the_agent_facing_routes_are_served_by_their_own_module_and_left_out_of_the_document() -> None:
    agent = {r.endpoint for r in ROUTES if r.audience == "agent"}
    assert agent == set(agent_reports.ENDPOINTS) == {"reportBatch", "reportEvents"}
    assert all(enqueue.ENDPOINTS[name] is agent_reports.ENDPOINTS[name] for name in agent)
    assert all(r.doc is None for r in ROUTES if r.audience == "agent")
    assert {r.path for r in ROUTES if r.audience == "agent"} == {"/v1/reports", "/v1/jobs/{job_id}/events"}


def test_the_document_lists_exactly_the_documented_routes() -> None:
    paths = jobs_openapi()["paths"]
    documented = {(path, method.upper()) for path, ops in paths.items() for method in ops}
    assert documented == {(r.path, r.method) for r in ROUTES if r.doc is not None}
    ids = [op["operationId"] for ops in paths.values() for op in ops.values()]
    assert len(ids) == len(set(ids))


@pytest.mark.parametrize(
    ("method", "path", "endpoint", "args"),
    [
        ("POST", "/v1/jobs", "createJob", {}),
        ("POST", "/v1/jobs/", "createJob", {}),
        ("POST", "/", "createJob", {}),
        ("POST", "/enqueue", "seedEnqueue", {}),
        ("GET", "/v1/jobs/job_a-B_9", "getJob", {"job_id": "job_a-B_9"}),
        ("GET", "/v1/jobs/job_x/", "getJob", {"job_id": "job_x"}),
        ("GET", "/v1/jobs/job_x/stream", "streamJob", {"job_id": "job_x"}),
        ("POST", "/v1/jobs/job_x/cancel", "cancelJob", {"job_id": "job_x"}),
        ("POST", "/v1/jobs/job_x/callback/resend", "resendCallbacks", {"job_id": "job_x"}),
        ("POST", "/v1/jobs/job_x/events", "reportEvents", {"job_id": "job_x"}),
        ("POST", "/v1/reports", "reportBatch", {}),
        ("GET", "/v1/cost", "cost", {}),
        ("GET", "/v1/openapi.json", "openapi", {}),
    ],
)
def test_resolve_finds_the_endpoint_and_the_path_parameters(
    method: str, path: str, endpoint: str, args: dict[str, str]
) -> None:
    route, found = resolve(method, path)
    assert route.endpoint == endpoint and dict(found) == args


@pytest.mark.parametrize(
    "path",
    ["/nowhere", "/v1", "/v1/jobs/" + "a" * 65, "/v1/jobs/bad!id", "/v1/jobs/job_x/other", "/v1/jobs/job_x/callback"],
)
def test_an_unknown_path_is_no_route(path: str) -> None:
    with pytest.raises(NotFound) as raised:
        resolve("GET", path)
    assert raised.value.code == "no_route"


@pytest.mark.parametrize("path", sorted({r.path for r in ROUTES}))
def test_a_known_path_with_another_method_answers_405_with_the_tables_allow(path: str) -> None:
    allowed = table_methods(path)
    for method in (m for m in METHODS if m not in allowed):
        with pytest.raises(MethodNotAllowed) as raised:
            resolve(method, concrete(path))
        assert raised.value.allow == allowed, method
        # Through the function's edge: answered before any handler runs (no control plane is built here).
        response = call(ENQUEUE, method, concrete(path))
        assert response.status_code == 405, (method, response.get_data(as_text=True))
        assert response.headers["Allow"] == ", ".join(allowed)
        assert response.get_json()["error"]["code"] == "method_not_allowed"


@pytest.mark.parametrize("method", [m for m in METHODS if m != "POST"])
def test_trigger_answers_another_method_with_405_and_allow_post(method: str) -> None:
    response = call(TRIGGER, method, "/trigger")
    assert response.status_code == 405 and response.headers["Allow"] == "POST"
    assert response.get_json()["error"]["code"] == "method_not_allowed"
