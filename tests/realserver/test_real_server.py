"""The real server itself, straight over HTTP (no gpuq code in between): what an OpenAI-compatible backend
gets from llama-cpp-python's server, pinned in the Makefile. Where it departs from OpenAI's API, the
assertion says so, so that a new pin that changes it shows here first."""

from __future__ import annotations

import json
from typing import Any

import httpx

from tests.realserver.conftest import RealServer


def sse_events(response: httpx.Response) -> list[Any]:
    """The ``data:`` payloads of an SSE answer, JSON-decoded (``[DONE]`` kept as the string)."""
    events: list[Any] = []
    for line in response.iter_lines():
        if line.startswith("data: "):
            data = line[len("data: ") :]
            events.append(data if data == "[DONE]" else json.loads(data))
    return events


def test_a_streamed_chat_completion_brings_real_tokens_then_the_finish_reason(real_server: RealServer) -> None:
    body = {
        "model": real_server.model,
        "messages": [{"role": "user", "content": "Say something."}],
        "max_tokens": 6,
        "stream": True,
        "stream_options": {"include_usage": True},
    }
    with httpx.stream("POST", real_server.base_url + "/v1/chat/completions", json=body, timeout=60) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        events = sse_events(response)
    assert events[-1] == "[DONE]"
    chunks = events[:-1]
    assert all(c["object"] == "chat.completion.chunk" and c["model"] == real_server.model for c in chunks)
    assert chunks[0]["choices"][0]["delta"] == {"role": "assistant"}
    texts = [c["choices"][0]["delta"].get("content") for c in chunks[1:-1]]
    assert len(texts) == 6 and all(isinstance(t, str) and t for t in texts)  # one token per chunk
    assert chunks[-1]["choices"][0] == {"index": 0, "delta": {}, "logprobs": None, "finish_reason": "length"}
    # Unlike OpenAI, no usage chunk despite include_usage: an agent streaming from it counts tokens itself.
    assert not any("usage" in c for c in chunks)


def test_the_same_request_unstreamed_carries_its_usage(real_server: RealServer) -> None:
    body = {"model": real_server.model, "messages": [{"role": "user", "content": "Hi"}], "max_tokens": 4}
    answer = httpx.post(real_server.base_url + "/v1/chat/completions", json=body, timeout=60).json()
    assert answer["object"] == "chat.completion" and answer["choices"][0]["finish_reason"] == "length"
    assert answer["choices"][0]["message"]["content"]
    assert answer["usage"]["completion_tokens"] == 4 and answer["usage"]["prompt_tokens"] > 0


def test_what_it_lists_and_what_it_accepts(real_server: RealServer) -> None:
    models = httpx.get(real_server.base_url + "/v1/models", timeout=10).json()
    assert [m["id"] for m in models["data"]] == [real_server.model]
    assert httpx.get(real_server.base_url + "/health", timeout=10).status_code == 404  # no health route
    body = {"model": "no-such-model", "messages": [{"role": "user", "content": "Hi"}], "max_tokens": 2}
    answer = httpx.post(real_server.base_url + "/v1/chat/completions", json=body, timeout=60)
    # Unlike OpenAI (404 model_not_found), any model name is served by its one model, under that name.
    assert answer.status_code == 200 and answer.json()["model"] == "no-such-model"
