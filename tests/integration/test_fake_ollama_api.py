"""The Ollama stand-in (shared.fakes.ollama) speaks Ollama's REST API over real sockets: deterministic
text, generate and chat, loading and keep_alive, tags, pull, and Ollama's errors."""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest

from shared.fakes.ollama import (
    FakeOllamaConfig,
    FakeOllamaServer,
    canonical_model_name,
    fake_completion_text,
    fake_completion_tokens,
    prompt_key,
    serve_in_thread,
)
from tests.integration.fake_ollama_wire import (
    CHAT_FINAL_KEYS,
    CHAT_MODEL,
    FAST,
    GENERATE_FINAL_KEYS,
    METRICS,
    MODEL,
    no_server_errors,
    parse_time,
    stats,
    stream_lines,
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
