"""The OpenAI-compatible stand-in over real sockets: the official ``openai`` package reads its streams,
answers and errors; the raw wire (SSE events, the usage chunk, ``[DONE]``, llama.cpp's loading 503);
faults and disconnects; ``python -m shared.fakes.openai_server``."""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest

from shared.fakes.ollama import FakeOllamaConfig, fake_completion_text, fake_embedding
from shared.fakes.openai_server import FakeOpenAIServer, serve_in_thread
from tests.servers import wait_until

pytestmark = pytest.mark.timeout(30)

MODEL = "llama3.2:1b"
FAST = FakeOllamaConfig(token_delay_s=0.001, load_delay_s=0.0)


@pytest.fixture
def server() -> Iterator[FakeOpenAIServer]:
    with serve_in_thread(FAST) as srv:
        wait_until(lambda: httpx.get(srv.url + "/health").status_code == 200, 10, "stand-in loaded")
        yield srv


@pytest.fixture
def client(server: FakeOpenAIServer) -> Iterator[openai.OpenAI]:
    with openai.OpenAI(base_url=server.url + "/v1", api_key="unused", max_retries=0) as c:
        yield c


def events(body: str) -> list[str]:
    """The ``data:`` payloads of an SSE body, in order; every event ends with a blank line."""
    assert body.endswith("\n\n")
    out = []
    for event in body.split("\n\n")[:-1]:
        assert event.startswith("data: "), event
        out.append(event.removeprefix("data: "))
    return out


def test_the_official_client_streams_chat_with_the_usage_chunk_last(client: openai.OpenAI) -> None:
    stream = client.chat.completions.create(
        model=MODEL,
        messages=[{"role": "system", "content": "be brief"}, {"role": "user", "content": "hello"}],
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = list(stream)
    assert chunks[0].choices[0].delta.role == "assistant" and chunks[0].choices[0].delta.content == ""
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == fake_completion_text(MODEL, "hello", 24)
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "stop"
    assert chunks[-1].choices == [] and chunks[-1].usage is not None
    assert chunks[-1].usage.completion_tokens == 24
    assert chunks[-1].usage.total_tokens == chunks[-1].usage.prompt_tokens + 24
    assert all(c.usage is None for c in chunks[:-1]) and len({c.id for c in chunks}) == 1


def test_the_official_client_reads_completions_whole_and_streamed(client: openai.OpenAI) -> None:
    whole = client.completions.create(model=MODEL, prompt="once upon", max_tokens=7)
    assert whole.choices[0].text == fake_completion_text(MODEL, "once upon", 7)
    assert whole.choices[0].finish_reason == "length" and whole.usage is not None
    assert whole.usage.completion_tokens == 7 and whole.object == "text_completion"
    parts = list(client.completions.create(model=MODEL, prompt="once upon", max_tokens=7, stream=True))
    assert "".join(p.choices[0].text for p in parts) == whole.choices[0].text
    assert parts[-1].choices[0].finish_reason == "length" and all(p.usage is None for p in parts)
    chat = client.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "hi"}], max_tokens=3)
    assert chat.choices[0].message.content == fake_completion_text(MODEL, "hi", 3)
    assert chat.usage is not None and chat.usage.completion_tokens == 3


def test_models_embeddings_and_errors_in_the_servers_shapes(client: openai.OpenAI) -> None:
    assert [m.id for m in client.models.list()] == ["llama3.2:1b", "qwen2.5:0.5b"]
    vectors = client.embeddings.create(model=MODEL, input=["a", "b"])
    assert [d.embedding for d in vectors.data] == [fake_embedding(MODEL, "a"), fake_embedding(MODEL, "b")]
    with pytest.raises(openai.NotFoundError) as missing:
        client.completions.create(model="nope", prompt="x")
    assert missing.value.body == {
        "message": "The model `nope` does not exist.",
        "type": "NotFoundError",
        "param": "model",
        "code": 404,
    }
    with pytest.raises(openai.BadRequestError) as bad:
        client.completions.create(model=MODEL, prompt="x", max_tokens=9000)
    assert "maximum context length is 8192 tokens" in str(bad.value)


def test_the_wire_of_a_stream_and_of_refusals(server: FakeOpenAIServer) -> None:
    body = {
        "model": MODEL,
        "prompt": "wire",
        "max_tokens": 2,
        "stream": True,
        "stream_options": {"include_usage": True},
    }
    reply = httpx.post(server.url + "/v1/completions", json=body)
    assert reply.headers["content-type"].startswith("text/event-stream")
    payloads = events(reply.text)
    assert payloads[-1] == "[DONE]"
    usage = json.loads(payloads[-2])
    assert usage["choices"] == [] and usage["usage"]["completion_tokens"] == 2
    assert [json.loads(p)["choices"][0]["finish_reason"] for p in payloads[:-2]] == [None, "length"]
    assert httpx.post(server.url + "/v1/completions", content=b"{").status_code == 400
    wrong = httpx.post(server.url + "/v1/completions", json={"model": MODEL, "prompt": "x", "stream_options": {}})
    assert wrong.status_code == 400 and wrong.json()["error"]["param"] == "stream_options"
    assert httpx.get(server.url + "/v1/nothing").json() == {"detail": "Not Found"}


def test_health_answers_503_loading_model_until_the_models_are_loaded() -> None:
    with serve_in_thread(FakeOllamaConfig(load_delay_s=0.5)) as srv:
        early = httpx.get(srv.url + "/health")
        assert early.status_code == 503
        assert early.json() == {"error": {"code": 503, "message": "Loading model", "type": "unavailable_error"}}
        refused = httpx.post(srv.url + "/v1/completions", json={"model": MODEL, "prompt": "x"})
        assert refused.status_code == 503 and refused.json()["error"]["message"] == "Loading model"
        assert httpx.get(srv.url + "/v1/models").status_code == 200  # as llama.cpp: listed while loading
        wait_until(lambda: httpx.get(srv.url + "/health").status_code == 200, 10, "loaded")
        assert httpx.get(srv.url + "/health").json() == {"status": "ok"}


def _faults(server: FakeOpenAIServer, **fields: Any) -> None:
    httpx.post(server.url + "/__fake__/faults", json=fields).raise_for_status()


def test_injected_faults_error_mid_stream_and_a_server_that_dies(
    server: FakeOpenAIServer, client: openai.OpenAI
) -> None:
    _faults(server, error_after_tokens=2, error_message="CUDA error: an illegal memory access")
    body = {"model": MODEL, "prompt": "x", "stream": True}
    payloads = events(httpx.post(server.url + "/v1/completions", json=body).text)
    assert payloads[-1] == "[DONE]"
    assert json.loads(payloads[-2])["error"]["message"] == "CUDA error: an illegal memory access"
    _faults(server, error_status=503)
    with pytest.raises(openai.InternalServerError) as busy:
        client.completions.create(model=MODEL, prompt="x")
    assert busy.value.status_code == 503
    _faults(server, fail_after_tokens=3)
    with pytest.raises(httpx.RemoteProtocolError):
        httpx.post(server.url + "/v1/completions", json=body)


def test_a_client_that_goes_away_stops_the_generation(server: FakeOpenAIServer) -> None:
    async def scenario() -> None:
        async with httpx.AsyncClient(base_url=server.url) as http:
            body = {"model": MODEL, "prompt": "long", "max_tokens": 5000, "stream": True}
            async with http.stream("POST", "/v1/completions", json=body) as reply:
                async for line in reply.aiter_lines():
                    if line.startswith("data: "):
                        break  # leave after the first event

    asyncio.run(scenario())
    wait_until(lambda: httpx.get(server.url + "/__fake__/stats").json()["generations_interrupted"] == 1, 10, "stopped")


def test_main_serves_in_the_foreground_and_exits_on_sigterm() -> None:
    root = Path(__file__).resolve().parents[2]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(root), os.environ.get("PYTHONPATH", "")])}
    cmd = [sys.executable, "-m", "shared.fakes.openai_server", "--port", "0", "--load-delay-ms", "0"]
    cmd += ["--models", "served-model"]
    with subprocess.Popen(cmd, cwd=root, env=env, stdout=subprocess.PIPE, text=True) as p:
        try:
            assert p.stdout is not None
            url = re.search(r"http://\S+", p.stdout.readline())
            assert url is not None
            wait_until(lambda: httpx.get(url.group(0) + "/health").status_code == 200, 10, "loaded")
            reply = httpx.post(url.group(0) + "/v1/completions", json={"prompt": "x"})  # no model: the served one
            assert reply.json()["choices"][0]["text"] == fake_completion_text("served-model", "x", 24)
            p.send_signal(signal.SIGTERM)
            assert p.wait(timeout=10) == 0
        finally:
            if p.poll() is None:
                p.kill()
