"""The Ollama stand-in (shared.fakes.ollama) speaks Ollama's REST API over real sockets."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import ollama
import pytest

from shared.fakes.ollama import (
    MAX_QUEUE_ERROR,
    FakeFaults,
    FakeOllamaConfig,
    FakeOllamaServer,
    canonical_model_name,
    fake_completion_text,
    fake_completion_tokens,
    prompt_key,
    serve_in_thread,
    start_fake_ollama,
)

pytestmark = pytest.mark.timeout(30)

MODEL = "llama3.2:1b"
CHAT_MODEL = "qwen2.5:0.5b"
FAST = FakeOllamaConfig(token_delay_s=0.001, load_delay_s=0.02, pull_delay_s=0.01)
RFC3339_NANO = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d{1,9})?Z$")
GENERATE_FINAL_KEYS = [
    "model",
    "created_at",
    "response",
    "done",
    "done_reason",
    "context",
    "total_duration",
    "load_duration",
    "prompt_eval_count",
    "prompt_eval_duration",
    "eval_count",
    "eval_duration",
]
CHAT_FINAL_KEYS = [
    "model",
    "created_at",
    "message",
    "done_reason",
    "done",
    "total_duration",
    "load_duration",
    "prompt_eval_count",
    "prompt_eval_duration",
    "eval_count",
    "eval_duration",
]
METRICS = GENERATE_FINAL_KEYS[6:]


@pytest.fixture(autouse=True)
def _no_server_errors(caplog: pytest.LogCaptureFixture) -> Iterator[None]:
    """The stand-in must never log a failure of its own (aiohttp logs handler exceptions)."""
    caplog.set_level(logging.WARNING)
    yield
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR and r.name.startswith("aiohttp")]
    assert not errors, [r.getMessage() for r in errors]


@pytest.fixture
def server() -> Iterator[FakeOllamaServer]:
    with serve_in_thread(FAST) as srv:
        yield srv


@pytest.fixture
def http(server: FakeOllamaServer) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.url, timeout=10) as client:
        yield client


def parse_time(stamp: str) -> datetime:
    assert RFC3339_NANO.match(stamp), stamp
    head, _, frac = stamp[:-1].partition(".")
    return datetime.fromisoformat(f"{head}.{(frac or '0')[:6]:0<6}+00:00")


def ndjson(lines: Iterator[str]) -> list[dict[str, Any]]:
    return [json.loads(line) for line in lines if line]


def stream_lines(client: httpx.Client, path: str, body: dict[str, Any]) -> list[dict[str, Any]]:
    with client.stream("POST", path, json=body) as resp:
        assert resp.status_code == 200
        assert resp.headers["content-type"] == "application/x-ndjson"
        return ndjson(resp.iter_lines())


def stats(client: httpx.Client) -> dict[str, Any]:
    out: dict[str, Any] = client.get("/__fake__/stats").json()
    return out


def wait_until(check: Callable[[], bool], timeout: float = 3.0) -> None:
    """For server-side effects with no observable event (e.g. noticing a gone client)."""
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "condition not reached"
        time.sleep(0.01)


# --------------------------------------------------------------------------------------------
# Deterministic text
# --------------------------------------------------------------------------------------------


def test_completion_is_a_pure_prefix_stable_function() -> None:
    long = fake_completion_tokens(MODEL, "Why is the sky blue?", 200)
    assert long == fake_completion_tokens(MODEL, "Why is the sky blue?", 200)
    for n in (0, 1, 7, 24, 199):
        assert fake_completion_tokens(MODEL, "Why is the sky blue?", n) == long[:n]
    assert all(t.startswith(" ") and t.strip() for t in long)
    assert fake_completion_text(MODEL, "Why is the sky blue?", 200) == "".join(long)
    assert fake_completion_tokens(CHAT_MODEL, "Why is the sky blue?", 50) != long[:50]
    assert fake_completion_tokens(MODEL, "Why is the sky green?", 50) != long[:50]
    # Ollama's name rules: case-insensitive, ":latest" implied, registry prefix optional.
    assert fake_completion_tokens("LLAMA3.2:1B", "x", 9) == fake_completion_tokens(MODEL, "x", 9)
    assert fake_completion_tokens("llama3.2", "x", 9) == fake_completion_tokens("llama3.2:latest", "x", 9)
    assert canonical_model_name("registry.ollama.ai/library/qwen2.5") == "qwen2.5:latest"
    assert prompt_key("short") == "short"
    assert prompt_key("y" * 500) != prompt_key("y" * 499 + "z")


# --------------------------------------------------------------------------------------------
# Generate and chat
# --------------------------------------------------------------------------------------------


def test_generate_streams_ndjson_token_lines_then_a_final_summary(http: httpx.Client) -> None:
    lines = stream_lines(http, "/api/generate", {"model": MODEL, "prompt": "Why is the sky blue?"})

    *tokens, final = lines
    assert len(tokens) == 24
    for line in tokens:
        assert list(line) == ["model", "created_at", "response", "done"]
        assert line["model"] == MODEL and line["done"] is False
    assert "".join(t["response"] for t in tokens) == fake_completion_text(MODEL, "Why is the sky blue?", 24)
    times = [parse_time(line["created_at"]) for line in lines]
    assert times == sorted(times)

    assert list(final) == GENERATE_FINAL_KEYS
    assert final["response"] == "" and final["done"] is True and final["done_reason"] == "stop"
    assert final["eval_count"] == 24
    assert all(isinstance(final[k], int) and final[k] > 0 for k in METRICS)
    assert final["total_duration"] >= final["load_duration"] + final["eval_duration"]
    assert final["load_duration"] >= 20_000_000  # the first request loaded the model
    assert final["eval_duration"] >= 24 * 1_000_000
    assert final["context"] and all(isinstance(i, int) for i in final["context"])


def test_chat_streams_the_reply_to_the_last_user_message(http: httpx.Client) -> None:
    messages = [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "first question"},
        {"role": "assistant", "content": "first answer"},
        {"role": "user", "content": "second question"},
    ]
    *tokens, final = stream_lines(http, "/api/chat", {"model": CHAT_MODEL, "messages": messages})

    for line in tokens:
        assert list(line) == ["model", "created_at", "message", "done"]
        assert line["message"]["role"] == "assistant" and line["done"] is False
    text = "".join(t["message"]["content"] for t in tokens)
    assert text == fake_completion_text(CHAT_MODEL, "second question", 24)
    assert list(final) == CHAT_FINAL_KEYS
    assert final["message"] == {"role": "assistant", "content": ""}
    assert final["done_reason"] == "stop" and final["eval_count"] == 24


def test_stream_false_returns_one_object_with_the_whole_text(http: httpx.Client) -> None:
    resp = http.post("/api/generate", json={"model": MODEL, "prompt": "hi", "stream": False})
    assert resp.status_code == 200
    assert resp.headers["content-type"] == "application/json; charset=utf-8"
    body = resp.json()
    assert list(body) == GENERATE_FINAL_KEYS
    assert body["response"] == fake_completion_text(MODEL, "hi", 24)

    raw = http.post("/api/generate", json={"model": MODEL, "prompt": "hi", "stream": False, "raw": True})
    assert "context" not in raw.json() and raw.json()["response"] == body["response"]

    chat = http.post(
        "/api/chat",
        json={"model": CHAT_MODEL, "messages": [{"role": "user", "content": "hi"}], "stream": False},
    ).json()
    assert list(chat) == CHAT_FINAL_KEYS
    assert chat["message"] == {"role": "assistant", "content": fake_completion_text(CHAT_MODEL, "hi", 24)}


def test_num_predict_cuts_the_text_with_done_reason_length(http: httpx.Client) -> None:
    *tokens, final = stream_lines(
        http, "/api/generate", {"model": MODEL, "prompt": "count", "options": {"num_predict": 7}}
    )
    assert len(tokens) == 7 and final["eval_count"] == 7 and final["done_reason"] == "length"
    text = "".join(t["response"] for t in tokens)
    assert text == fake_completion_text(MODEL, "count", 7)
    assert fake_completion_text(MODEL, "count", 24).startswith(text)

    longer = http.post(
        "/api/chat",
        json={
            "model": CHAT_MODEL,
            "messages": [{"role": "user", "content": "go"}],
            "stream": False,
            "options": {"num_predict": 40, "temperature": 0},
        },
    ).json()
    assert longer["done_reason"] == "length" and longer["eval_count"] == 40
    assert longer["message"]["content"] == fake_completion_text(CHAT_MODEL, "go", 40)


# --------------------------------------------------------------------------------------------
# Loading, keep_alive, /api/ps, /api/tags
# --------------------------------------------------------------------------------------------


def ps_names(http: httpx.Client) -> dict[str, datetime]:
    return {m["name"]: parse_time(m["expires_at"]) for m in http.get("/api/ps").json()["models"]}


def test_empty_prompt_loads_and_keep_alive_drives_ps(http: httpx.Client) -> None:
    assert http.get("/api/ps").json() == {"models": []}

    load = http.post("/api/generate", json={"model": MODEL})
    assert load.status_code == 200
    assert load.headers["content-type"] == "application/json; charset=utf-8"
    body = load.json()
    assert list(body) == ["model", "created_at", "response", "done", "done_reason"]
    assert body["done"] is True and body["done_reason"] == "load" and body["response"] == ""

    [row] = http.get("/api/ps").json()["models"]
    assert list(row) == ["name", "model", "size", "digest", "details", "expires_at", "size_vram"]
    assert row["name"] == MODEL and row["size_vram"] == row["size"] > 0
    remaining = (parse_time(row["expires_at"]) - datetime.now(UTC)).total_seconds()
    assert 290 < remaining <= 300  # default keep_alive 5m

    unload = http.post("/api/generate", json={"model": MODEL, "keep_alive": 0}).json()
    assert unload["done_reason"] == "unload"
    assert ps_names(http) == {}

    chat_load = http.post("/api/chat", json={"model": CHAT_MODEL, "messages": []}).json()
    assert chat_load["done_reason"] == "load" and chat_load["message"] == {"role": "assistant", "content": ""}

    http.post("/api/generate", json={"model": MODEL, "prompt": "x", "keep_alive": -1, "stream": False})
    http.post("/api/chat", json={"model": CHAT_MODEL, "messages": [], "keep_alive": "1h30m"})
    expiry = ps_names(http)
    assert expiry[MODEL].year > 2200  # negative keep_alive: forever
    assert 5390 < (expiry[CHAT_MODEL] - datetime.now(UTC)).total_seconds() <= 5400
    assert list(expiry) == [MODEL, CHAT_MODEL]  # longest remaining first

    http.post("/api/chat", json={"model": CHAT_MODEL, "messages": [{"role": "user", "content": "x"}], "keep_alive": 0})
    assert list(ps_names(http)) == [MODEL]
    assert stats(http)["model_unloads"] == 2


def test_a_model_loads_once_for_concurrent_first_requests() -> None:
    config = FakeOllamaConfig(token_delay_s=0.001, load_delay_s=0.15)

    async def scenario(url: str) -> list[dict[str, Any]]:
        async with httpx.AsyncClient(base_url=url, timeout=10) as client:
            body = {"model": MODEL, "prompt": "p", "stream": False, "options": {"num_predict": 3}}
            first = await asyncio.gather(*(client.post("/api/generate", json=body) for _ in range(5)))
            again = await client.post("/api/generate", json=body)
            return [r.json() for r in [*first, again]]

    with serve_in_thread(config) as srv:
        *first, again = asyncio.run(scenario(srv.url))
        assert all(r["load_duration"] >= 150_000_000 for r in first)
        assert again["load_duration"] < 150_000_000
        assert httpx.get(srv.url + "/__fake__/stats").json()["model_loads"] == 1


def test_tags_lists_local_models(http: httpx.Client) -> None:
    models = http.get("/api/tags").json()["models"]
    assert [m["name"] for m in models] == [MODEL, CHAT_MODEL]
    for m in models:
        assert list(m) == ["name", "model", "modified_at", "size", "digest", "details"]
        assert m["model"] == m["name"] and m["size"] > 0 and re.fullmatch(r"[0-9a-f]{64}", m["digest"])
        parse_time(m["modified_at"])
        assert list(m["details"]) == [
            "parent_model",
            "format",
            "family",
            "families",
            "parameter_size",
            "quantization_level",
        ]
    assert models[0]["details"]["family"] == "llama" and models[1]["details"]["family"] == "qwen2"


# --------------------------------------------------------------------------------------------
# Pull
# --------------------------------------------------------------------------------------------


def test_pull_streams_progress_and_then_lists_the_model(http: httpx.Client) -> None:
    assert http.post("/api/generate", json={"model": "smollm:135m", "prompt": "x"}).status_code == 404

    lines = stream_lines(http, "/api/pull", {"model": "smollm:135m"})
    statuses = [line["status"] for line in lines]
    assert statuses[0] == "pulling manifest"
    assert statuses[-3:] == ["verifying sha256 digest", "writing manifest", "success"]
    downloads = lines[1:-3]
    assert downloads and all(re.fullmatch(r"pulling [0-9a-f]{12}", d["status"]) for d in downloads)
    progress: dict[str, list[int]] = {}
    for d in downloads:
        assert d["digest"] == "sha256:" + d["digest"][7:] and d["status"][8:] == d["digest"][7:19]
        progress.setdefault(d["digest"], []).append(d.get("completed", 0))
        assert d.get("completed", 0) <= d["total"]
    for digest, seen in progress.items():
        assert seen == sorted(seen) and seen[0] == 0, digest
        assert seen[-1] == next(d["total"] for d in downloads if d["digest"] == digest)

    assert "smollm:135m" in [m["name"] for m in http.get("/api/tags").json()["models"]]
    reply = http.post("/api/generate", json={"model": "smollm:135m", "prompt": "x", "stream": False}).json()
    assert reply["response"] == fake_completion_text("smollm:135m", "x", 24)

    whole = http.post("/api/pull", json={"model": "tinyllama", "stream": False})
    assert whole.status_code == 200 and whole.json() == {"status": "success"}
    assert "tinyllama:latest" in [m["name"] for m in http.get("/api/tags").json()["models"]]
    assert http.post("/api/pull", json={}).json() == {"error": "invalid model name"}


def test_pull_of_a_model_the_registry_lacks() -> None:
    config = FakeOllamaConfig(pullable_models=["tinyllama"], pull_delay_s=0)
    with serve_in_thread(config) as srv, httpx.Client(base_url=srv.url) as http:
        lines = stream_lines(http, "/api/pull", {"model": "no-such-model"})
        assert lines == [
            {"status": "pulling manifest"},
            {"error": "pull model manifest: file does not exist"},
        ]
        whole = http.post("/api/pull", json={"model": "no-such-model", "stream": False})
        assert whole.status_code == 500
        assert whole.json() == {"error": "pull model manifest: file does not exist"}
        assert http.post("/api/pull", json={"model": "tinyllama", "stream": False}).status_code == 200


# --------------------------------------------------------------------------------------------
# Errors
# --------------------------------------------------------------------------------------------


def test_errors_have_ollamas_status_and_body(http: httpx.Client) -> None:
    def post(path: str, content: bytes | str) -> tuple[int, Any]:
        resp = http.post(path, content=content)
        assert resp.headers["content-type"] == "application/json; charset=utf-8"
        return resp.status_code, resp.json()

    chat = [{"role": "user", "content": "x"}]
    for path, struct in (("/api/generate", "GenerateRequest"), ("/api/chat", "ChatRequest")):
        unknown = json.dumps({"model": "mistral:7b", "prompt": "x", "messages": chat})
        assert post(path, unknown) == (404, {"error": 'model "mistral:7b" not found, try pulling it first'})
        assert post(path, '{"prompt": "x"}') == (400, {"error": "model is required"})
        assert post(path, "") == (400, {"error": "missing request body"})
        assert post(path, '{"model": ') == (400, {"error": "unexpected EOF"})
        assert post(path, "{model}") == (
            400,
            {"error": "invalid character 'm' looking for beginning of object key string"},
        )
        assert post(path, "[]") == (400, {"error": f"json: cannot unmarshal array into Go value of type api.{struct}"})
        assert post(path, json.dumps({"model": MODEL, "keep_alive": "5 minutes"}))[0] == 400
        assert post(path, json.dumps({"model": MODEL, "stream": "no"}))[0] == 400
        thinking = json.dumps({"model": MODEL, "prompt": "x", "messages": chat, "think": True})
        assert post(path, thinking) == (400, {"error": f'"{MODEL}" does not support thinking'})

    assert post("/api/generate", json.dumps({"model": MODEL, "prompt": 3})) == (
        400,
        {"error": "json: cannot unmarshal number into Go struct field GenerateRequest.prompt of type string"},
    )
    assert post("/api/generate", json.dumps({"model": MODEL, "keep_alive": "10"})) == (
        400,
        {"error": 'time: missing unit in duration "10"'},
    )
    assert post("/api/generate", json.dumps({"model": MODEL, "prompt": "x", "options": {"num_predict": "x"}})) == (
        500,
        {"error": 'option "num_predict" must be of type integer'},
    )

    assert http.get("/api/generate").status_code == 405
    missing = http.get("/api/nothing")
    assert (missing.status_code, missing.text) == (404, "404 page not found")
    assert stats(http)["generations_started"] == 0


def test_root_head_and_version(http: httpx.Client) -> None:
    root = http.get("/")
    assert (root.status_code, root.text) == (200, "Ollama is running")
    head = http.head("/")
    assert head.status_code == 200 and head.content == b""
    assert http.get("/api/version").json() == {"version": "0.5.7"}


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


# --------------------------------------------------------------------------------------------
# Real clients and entry points
# --------------------------------------------------------------------------------------------


def test_the_official_ollama_client_works(server: FakeOllamaServer) -> None:
    with ollama.Client(host=server.url) as client:
        reply = client.generate(model=MODEL, prompt="hello")
        assert reply.response == fake_completion_text(MODEL, "hello", 24) and reply.done_reason == "stop"

        parts = list(client.generate(model=MODEL, prompt="hello", stream=True, options={"num_predict": 4}))
        assert "".join(p.response or "" for p in parts) == fake_completion_text(MODEL, "hello", 4)
        assert parts[-1].done and parts[-1].done_reason == "length" and parts[-1].eval_count == 4

        chunks = list(client.chat(model=CHAT_MODEL, messages=[{"role": "user", "content": "hey"}], stream=True))
        assert "".join(c.message.content or "" for c in chunks) == fake_completion_text(CHAT_MODEL, "hey", 24)
        assert chunks[-1].done_reason == "stop"

        assert [m.model for m in client.list().models] == [MODEL, CHAT_MODEL]
        assert {m.model for m in client.ps().models} == {MODEL, CHAT_MODEL}
        progress = list(client.pull("phi3:mini", stream=True))
        assert progress[0].status == "pulling manifest" and progress[-1].status == "success"
        assert any(p.total and p.completed == p.total for p in progress)
        assert client.pull("gemma2:2b").status == "success"
        assert "gemma2:2b" in [m.model for m in client.list().models]
        assert client.show(MODEL).details is not None
        assert client.delete("gemma2:2b").status == "success"

        with pytest.raises(ollama.ResponseError) as err:
            client.chat(model="nope", messages=[{"role": "user", "content": "x"}])
        assert err.value.status_code == 404
        assert err.value.error == 'model "nope" not found, try pulling it first'


def test_32_concurrent_streams_are_not_slowed_by_the_server() -> None:
    config = FakeOllamaConfig(token_delay_s=0.005, load_delay_s=0)
    tokens = 60

    async def scenario(url: str) -> tuple[float, list[int]]:
        limits = httpx.Limits(max_connections=64)
        async with httpx.AsyncClient(base_url=url, timeout=10, limits=limits) as client:
            await client.post("/api/generate", json={"model": MODEL})  # load first

            async def one(i: int) -> int:
                body = {"model": MODEL, "prompt": f"p{i}", "options": {"num_predict": tokens}}
                async with client.stream("POST", "/api/generate", json=body) as resp:
                    return len([line async for line in resp.aiter_lines() if line])

            start = time.perf_counter()
            counts = await asyncio.gather(*(one(i) for i in range(32)))
            return time.perf_counter() - start, list(counts)

    with serve_in_thread(config) as srv:
        elapsed, counts = asyncio.run(scenario(srv.url))
    assert counts == [tokens + 1] * 32
    ideal = tokens * 0.005
    assert elapsed < ideal * 1.5 + 0.25, f"{elapsed:.3f}s for an ideal {ideal:.3f}s"


def test_start_fake_ollama_binds_port_zero() -> None:
    async def scenario() -> None:
        srv = await start_fake_ollama("127.0.0.1", 0, FakeOllamaConfig(models=["tinyllama"]))
        try:
            assert srv.port > 0 and srv.url == f"http://127.0.0.1:{srv.port}"
            async with httpx.AsyncClient(base_url=srv.url) as client:
                tags = (await client.get("/api/tags")).json()
                assert [m["name"] for m in tags["models"]] == ["tinyllama:latest"]
        finally:
            await srv.close()

    asyncio.run(scenario())


def test_main_serves_in_the_foreground_and_exits_on_sigterm() -> None:
    root = Path(__file__).resolve().parents[2]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(root), os.environ.get("PYTHONPATH", "")])}
    cmd = [sys.executable, "-m", "shared.fakes.ollama", "--port", "0", "--token-delay-ms", "0"]
    cmd += ["--load-delay-ms", "0", "--models", "llama3.2:1b,tinyllama"]
    with subprocess.Popen(cmd, cwd=root, env=env, stdout=subprocess.PIPE, text=True) as proc:
        try:
            assert proc.stdout is not None
            url = re.search(r"http://\S+", proc.stdout.readline())
            assert url is not None
            reply = httpx.post(
                url.group(0) + "/api/generate", json={"model": "tinyllama", "prompt": "x", "stream": False}
            )
            assert reply.json()["response"] == fake_completion_text("tinyllama", "x", 24)
            proc.send_signal(signal.SIGTERM)
            assert proc.wait(timeout=10) == 0
        finally:
            if proc.poll() is None:
                proc.kill()
