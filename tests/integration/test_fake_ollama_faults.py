"""The Ollama stand-in's limits (max_queue, num_parallel), its fault and stats hooks, and what it does
when a client goes away, over real sockets."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from typing import Any

import httpx
import ollama
import pytest

from shared.fakes.ollama import (
    MAX_QUEUE_ERROR,
    FakeFaults,
    FakeOllamaConfig,
    FakeOllamaServer,
    fake_completion_tokens,
    prompt_key,
    serve_in_thread,
)
from tests.integration.fake_ollama_wire import (
    FAST,
    MODEL,
    no_server_errors,
    parse_time,
    stats,
    stream_lines,
    wait_until,
)

pytestmark = pytest.mark.timeout(30)


@pytest.fixture(autouse=True)
def _no_server_errors(caplog: pytest.LogCaptureFixture) -> Iterator[None]:
    with no_server_errors(caplog):
        yield


@pytest.fixture
def server() -> Iterator[FakeOllamaServer]:
    with serve_in_thread(FAST) as srv:
        yield srv


@pytest.fixture
def http(server: FakeOllamaServer) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.url, timeout=10) as client:
        yield client


# --------------------------------------------------------------------------------------------
# Limits: max_queue, num_parallel
# --------------------------------------------------------------------------------------------


def test_queue_full_answers_503() -> None:
    config = FakeOllamaConfig(token_delay_s=0.01, load_delay_s=0, max_queue=2)

    async def scenario(url: str) -> tuple[httpx.Response, list[int]]:
        async with httpx.AsyncClient(base_url=url, timeout=10) as client:
            body = {"model": MODEL, "prompt": "busy", "options": {"num_predict": 10}}
            async with (
                client.stream("POST", "/api/generate", json=body) as a,
                client.stream("POST", "/api/chat", json={**body, "messages": [{"role": "user", "content": "b"}]}) as b,
            ):
                lines_a, lines_b = a.aiter_lines(), b.aiter_lines()
                await anext(lines_a), await anext(lines_b)  # both admitted and generating
                rejected = await client.post("/api/generate", json={**body, "stream": False})
                rest = [len([x async for x in lines_a]), len([x async for x in lines_b])]
            after = await client.post("/api/generate", json={**body, "stream": False})
            assert after.status_code == 200
            return rejected, rest

    with serve_in_thread(config) as srv:
        rejected, rest = asyncio.run(scenario(srv.url))
        assert rejected.status_code == 503
        assert rejected.json() == {"error": MAX_QUEUE_ERROR}
        assert rest == [10, 10]  # 9 more tokens and the final line each
        assert httpx.get(srv.url + "/__fake__/stats").json()["rejected_queue_full"] == 1


def test_num_parallel_serialises_generations_per_model() -> None:
    config = FakeOllamaConfig(token_delay_s=0.002, load_delay_s=0, num_parallel=1)

    async def scenario(url: str) -> list[list[dict[str, Any]]]:
        async with httpx.AsyncClient(base_url=url, timeout=10) as client:

            async def run(prompt: str) -> list[dict[str, Any]]:
                body = {"model": MODEL, "prompt": prompt, "options": {"num_predict": 10}}
                async with client.stream("POST", "/api/generate", json=body) as resp:
                    return [json.loads(line) async for line in resp.aiter_lines() if line]

            return list(await asyncio.gather(run("a"), run("b")))

    with serve_in_thread(config) as srv:
        first, second = sorted(asyncio.run(scenario(srv.url)), key=lambda ls: ls[0]["created_at"])
        assert parse_time(first[-1]["created_at"]) <= parse_time(second[0]["created_at"])


# --------------------------------------------------------------------------------------------
# Fault hooks, stats, disconnects
# --------------------------------------------------------------------------------------------


def set_faults(http: httpx.Client, **body: Any) -> dict[str, Any]:
    resp = http.post("/__fake__/faults", json=body)
    assert resp.status_code == 200, resp.text
    out: dict[str, Any] = resp.json()
    return out


def test_error_status_fault_hits_the_next_requests_only(http: httpx.Client) -> None:
    set_faults(http, error_status=500)
    failed = http.post("/api/generate", json={"model": MODEL, "prompt": "x", "stream": False})
    assert failed.status_code == 500
    assert failed.json() == {"error": "llama runner process has terminated: exit status 2"}
    assert http.post("/api/generate", json={"model": MODEL, "prompt": "x", "stream": False}).status_code == 200

    view = set_faults(http, error_status=503, error_message="try later", times=2)
    assert view["faults"]["error_status"] == 503 and view["faults"]["times"] == 2
    for _ in range(2):
        assert http.post("/api/chat", json={"model": MODEL, "messages": []}).json() == {"error": "try later"}
    assert http.post("/api/chat", json={"model": MODEL, "messages": []}).status_code == 200
    assert http.get("/__fake__/faults").json()["faults"]["error_status"] is None

    set_faults(http, error_status=500, times=-1)
    assert http.post("/api/pull", json={"model": "x", "stream": False}).status_code == 500
    assert http.delete("/__fake__/faults").json()["faults"]["error_status"] is None
    assert http.post("/api/pull", json={"model": "x", "stream": False}).status_code == 200
    assert stats(http)["faults_fired"] == 4
    assert http.post("/__fake__/faults", json={"no_such_fault": 1}).status_code == 400


def test_faults_can_be_configured_up_front() -> None:
    config = FakeOllamaConfig(load_delay_s=0, faults=FakeFaults(error_status=503))
    with serve_in_thread(config) as srv, httpx.Client(base_url=srv.url) as http:
        assert http.post("/api/generate", json={"model": MODEL}).status_code == 503
        assert http.post("/api/generate", json={"model": MODEL}).status_code == 200


def test_fail_after_tokens_drops_the_connection_mid_stream(http: httpx.Client) -> None:
    set_faults(http, fail_after_tokens=3)
    received: list[dict[str, Any]] = []
    with (
        pytest.raises(httpx.RemoteProtocolError),
        http.stream("POST", "/api/generate", json={"model": MODEL, "prompt": "x"}) as resp,
    ):
        received.extend(json.loads(line) for line in resp.iter_lines())
    assert [line["response"] for line in received] == fake_completion_tokens(MODEL, "x", 3)

    set_faults(http, fail_after_tokens=5)
    with pytest.raises(httpx.RemoteProtocolError):
        http.post("/api/chat", json={"model": MODEL, "messages": [{"role": "user", "content": "x"}], "stream": False})

    ok = http.post("/api/generate", json={"model": MODEL, "prompt": "x", "stream": False})
    assert ok.status_code == 200
    counts = stats(http)
    assert counts["generations_started"] == 3
    assert counts["generations_interrupted"] == 2 and counts["generations_completed"] == 1


def test_error_after_tokens_sends_ollamas_error_line(server: FakeOllamaServer, http: httpx.Client) -> None:
    set_faults(http, error_after_tokens=2, error_message="runner crashed")
    lines = stream_lines(http, "/api/generate", {"model": MODEL, "prompt": "x"})
    assert [line.get("response") for line in lines[:2]] == fake_completion_tokens(MODEL, "x", 2)
    assert lines[2:] == [{"error": "runner crashed"}]

    set_faults(http, error_after_tokens=0)  # nothing streamed yet: a plain HTTP error, as Ollama does
    early = http.post("/api/generate", json={"model": MODEL, "prompt": "x"})
    assert early.status_code == 500
    assert early.json() == {"error": "llama runner process has terminated: exit status 2"}

    set_faults(http, error_after_tokens=1)
    with ollama.Client(host=server.url) as client, pytest.raises(ollama.ResponseError, match="terminated"):
        list(client.chat(model=MODEL, messages=[{"role": "user", "content": "x"}], stream=True))


def test_stall_after_tokens_holds_the_stream_open(http: httpx.Client) -> None:
    set_faults(http, stall_after_tokens=2)
    received: list[str] = []
    with (
        pytest.raises(httpx.ReadTimeout),
        http.stream("POST", "/api/generate", json={"model": MODEL, "prompt": "x"}, timeout=0.3) as resp,
    ):
        received.extend(resp.iter_lines())
    assert len(received) == 2
    wait_until(lambda: stats(http)["generations_interrupted"] == 1)


def test_token_delay_can_be_changed_live(http: httpx.Client) -> None:
    view = set_faults(http, token_delay_s=0.02, default_num_tokens=5)
    assert view["config"]["token_delay_s"] == 0.02
    reply = http.post("/api/generate", json={"model": MODEL, "prompt": "slow", "stream": False}).json()
    assert reply["eval_count"] == 5 and reply["eval_duration"] >= 5 * 20_000_000


def test_client_disconnect_stops_generation(http: httpx.Client) -> None:
    set_faults(http, token_delay_s=0.01)
    body = {"model": MODEL, "prompt": "long job", "options": {"num_predict": 10_000}}
    with http.stream("POST", "/api/generate", json=body) as resp:
        lines = resp.iter_lines()
        next(lines), next(lines)
    wait_until(lambda: stats(http)["active_generations"] == 0)
    counts = stats(http)
    assert counts["generations_interrupted"] == 1 and counts["generations_completed"] == 0
    assert counts["inflight"] == 0


def test_stats_count_requests_and_generations(http: httpx.Client) -> None:
    http.get("/api/tags")
    http.post("/api/generate", json={"model": MODEL})  # load only: not a generation
    for prompt in ("job-1", "job-2", "job-2"):
        http.post("/api/generate", json={"model": MODEL, "prompt": prompt, "stream": False})
    http.post("/api/chat", json={"model": MODEL, "messages": [{"role": "user", "content": "job-3"}]})
    counts = stats(http)
    assert counts["requests"] == {"/api/tags": 1, "/api/generate": 4, "/api/chat": 1}
    assert counts["generations_started"] == 4
    assert counts["generations_by_path"] == {"/api/generate": 3, "/api/chat": 1}
    assert counts["generations_by_prompt"] == {prompt_key("job-1"): 1, prompt_key("job-2"): 2, "job-3": 1}
    assert counts["model_loads"] == 1
    assert http.delete("/__fake__/stats").json()["generations_started"] == 0
    assert stats(http)["requests"] == {}
