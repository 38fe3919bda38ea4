"""The jobs API's refusals and contracts, over real sockets against the running local stack."""

from __future__ import annotations

import json
import sqlite3
import uuid
from typing import Any

import httpx
import pytest

from shared.tools.devstack import DevStack
from tests.servers import MODEL


def job_count(stack: DevStack) -> int:
    with sqlite3.connect(stack.settings.sqlite_path()) as db:
        return int(db.execute("SELECT COUNT(*) FROM jobs").fetchone()[0])


def post(
    stack: DevStack,
    path: str,
    *,
    body: Any = None,
    raw: bytes | None = None,
    headers: dict[str, str] | None = None,
    auth: bool = True,
) -> httpx.Response:
    sent = {"Content-Type": "application/json"}
    if auth:
        sent["Authorization"] = f"Bearer {stack.api_key}"
    sent.update(headers or {})
    content = raw if raw is not None else json.dumps(body).encode()
    return httpx.post(stack.url + path, content=content, headers=sent, timeout=30)


BAD_REQUESTS = [
    ("missing model", {"prompt": "hi"}, 422, "model"),
    ("empty model", {"model": "", "prompt": "hi"}, 422, "model"),
    ("empty prompt", {"model": MODEL, "prompt": "  "}, 422, "prompt"),
    ("neither prompt nor messages", {"model": MODEL}, 422, "exactly one"),
    (
        "both prompt and messages",
        {"model": MODEL, "prompt": "a", "messages": [{"role": "user", "content": "b"}]},
        422,
        "exactly one",
    ),
    ("unknown field", {"model": MODEL, "prompt": "a", "temperature": 0.2}, 422, "temperature: unknown field"),
    ("not llm work", {"type": "image", "model": MODEL, "prompt": "a"}, 422, "only 'llm'"),
    ("ftp callback", {"model": MODEL, "prompt": "a", "callback_url": "ftp://example.com/x"}, 422, "callback_url"),
    ("private callback", {"model": MODEL, "prompt": "a", "callback_url": "http://10.0.0.8/hook"}, 422, "private"),
    ("bad message role", {"model": MODEL, "messages": [{"role": "robot", "content": "x"}]}, 422, "role"),
    ("array body", [1, 2], 422, "JSON object"),
]


@pytest.mark.parametrize(("case", "body", "status", "needle"), BAD_REQUESTS, ids=[c[0] for c in BAD_REQUESTS])
def test_bad_job_bodies_get_a_clear_4xx_and_store_nothing(
    stack: DevStack, case: str, body: Any, status: int, needle: str
) -> None:
    before = job_count(stack)
    response = post(stack, "/v1/jobs", body=body)
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert error["code"] and needle in error["message"]
    assert job_count(stack) == before


def test_non_json_wrong_type_and_oversized_bodies(stack: DevStack) -> None:
    before = job_count(stack)
    bad_json = post(stack, "/v1/jobs", raw=b"{model: nope")
    assert bad_json.status_code == 400 and bad_json.json()["error"]["code"] == "invalid_json"
    form = post(stack, "/v1/jobs", raw=b"model=x", headers={"Content-Type": "application/x-www-form-urlencoded"})
    assert form.status_code == 415 and "application/json" in form.json()["error"]["message"]
    huge = post(stack, "/v1/jobs", body={"model": MODEL, "prompt": "x" * (1024 * 1024 + 10)})
    assert huge.status_code == 413 and huge.json()["error"]["code"] == "payload_too_large"
    assert job_count(stack) == before


def test_api_key_required(stack: DevStack) -> None:
    missing = post(stack, "/v1/jobs", body={"model": MODEL, "prompt": "a"}, auth=False)
    assert missing.status_code == 401 and missing.json()["error"]["code"] == "missing_api_key"
    wrong = post(
        stack,
        "/v1/jobs",
        body={"model": MODEL, "prompt": "a"},
        auth=False,
        headers={"Authorization": "Bearer not-a-key"},
    )
    assert wrong.status_code == 401 and wrong.json()["error"]["code"] == "invalid_api_key"
    read = httpx.get(f"{stack.url}/v1/jobs/job_x", headers={"Authorization": "Bearer nope"})
    assert read.status_code == 401


def test_unknown_job_and_route(stack: DevStack) -> None:
    headers = {"Authorization": f"Bearer {stack.api_key}"}
    unknown = httpx.get(f"{stack.url}/v1/jobs/job_doesnotexist", headers=headers)
    assert unknown.status_code == 404 and unknown.json()["error"]["code"] == "job_not_found"
    cancel = httpx.post(f"{stack.url}/v1/jobs/job_doesnotexist/cancel", headers=headers)
    assert cancel.status_code == 404
    nowhere = httpx.get(f"{stack.url}/nowhere", headers=headers)
    assert nowhere.status_code == 404 and "error" in nowhere.json()


def test_internal_endpoints_refuse_unauthenticated_callers(stack: DevStack) -> None:
    dispatch = post(stack, "/dispatch", body={"kind": "job", "job_id": "job_x", "seq": 0}, auth=False)
    assert dispatch.status_code == 401 and dispatch.json()["error"]["code"] == "invalid_task_signature"
    reaper = post(stack, "/reaper", body={}, auth=False)
    assert reaper.status_code == 401
    trigger = post(stack, "/trigger", body={}, auth=False)
    assert trigger.status_code == 401
    forged = post(
        stack,
        "/trigger",
        body={"instance_id": "local-1"},
        auth=False,
        headers={"X-Gpuq-Signature": "x", "X-Gpuq-Timestamp": "1", "X-Gpuq-Nonce": "n"},
    )
    assert forged.status_code == 401
    report = post(
        stack, "/v1/jobs/job_x/events", body={"attempt": 1}, auth=False, headers={"Authorization": "Bearer 1.forged"}
    )
    assert report.status_code == 401 and report.json()["error"]["code"] == "invalid_job_token"
    batch = post(
        stack,
        "/v1/reports",
        auth=False,
        body={"reports": [{"job_id": "job_x", "token": "1.forged", "report": {"attempt": 1}}]},
    )
    assert batch.status_code == 401 and batch.json()["error"]["code"] == "invalid_job_token"


def test_trigger_with_its_token_reports_what_waits(stack: DevStack) -> None:
    response = post(
        stack, "/trigger", body={}, auth=False, headers={"Authorization": f"Bearer {stack.settings.trigger_token}"}
    )
    assert response.status_code == 200
    assert set(response.json()) == {"waiting", "started", "boxes_started", "dispatched"}


def test_idempotency_key_returns_the_same_job_and_refuses_a_different_body(stack: DevStack) -> None:
    key = f"idem-{uuid.uuid4()}"
    body = {"model": MODEL, "prompt": f"idempotent {key}", "max_queue_s": 600}
    first = post(stack, "/v1/jobs", body=body, headers={"Idempotency-Key": key})
    second = post(stack, "/v1/jobs", body=body | {"idempotency_key": key})
    assert first.status_code == 202 and second.status_code == 200
    assert first.json()["id"] == second.json()["id"]
    other = post(stack, "/v1/jobs", body=body | {"prompt": "something else"}, headers={"Idempotency-Key": key})
    assert other.status_code == 409 and other.json()["error"]["code"] == "idempotency_conflict"


def test_seed_compatible_enqueue(stack: DevStack) -> None:
    ok = post(
        stack,
        "/enqueue",
        body={"prompt": "seed style", "model": MODEL, "callbackUrl": None},
        headers={"x-task-type": "llm"},
    )
    assert ok.status_code == 202 and ok.json()["status"] == "queued"
    wrong = post(stack, "/enqueue", body={"prompt": "seed style", "model": MODEL}, headers={"x-task-type": "image"})
    assert wrong.status_code == 400 and wrong.json()["error"]["code"] == "unsupported_task_type"
    missing = post(stack, "/enqueue", body={"prompt": "seed style", "model": MODEL})
    assert missing.status_code == 400


@pytest.mark.parametrize(
    ("method", "path", "allow"),
    [
        ("GET", "/v1/jobs", "POST"),
        ("DELETE", "/v1/jobs/job_x", "GET"),
        ("HEAD", "/v1/jobs/job_x/stream", "GET"),
        ("GET", "/v1/jobs/job_x/cancel", "POST"),
        ("PUT", "/v1/jobs/job_x/callback/resend", "POST"),
        ("GET", "/v1/jobs/job_x/events", "POST"),
        ("GET", "/v1/reports", "POST"),
        ("POST", "/v1/cost", "GET"),
        ("OPTIONS", "/v1/openapi.json", "GET"),
        ("GET", "/enqueue", "POST"),
        ("GET", "/trigger", "POST"),
    ],
)
def test_a_known_path_with_another_method_answers_405_with_allow(
    stack: DevStack, method: str, path: str, allow: str
) -> None:
    response = httpx.request(method, stack.url + path, headers={"Authorization": f"Bearer {stack.api_key}"})
    assert response.status_code == 405 and response.headers["Allow"] == allow
    if method != "HEAD":
        assert response.json()["error"]["code"] == "method_not_allowed"
