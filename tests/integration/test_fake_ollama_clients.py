"""Real clients against the Ollama stand-in (the official ``ollama`` package, 32 concurrent streams) and
its entry points (in-process on port 0, ``python -m shared.fakes.ollama``)."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import ollama
import pytest

from shared.fakes.ollama import (
    FakeOllamaConfig,
    FakeOllamaServer,
    fake_completion_text,
    serve_in_thread,
    start_fake_ollama,
)
from tests.integration.fake_ollama_wire import (
    CHAT_MODEL,
    FAST,
    MODEL,
    no_server_errors,
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


def test_32_concurrent_streams_are_served_at_once() -> None:
    """Every one of 32 streams has its first token before any of them has its last: the stand-in
    serves them side by side, never one after another (speed itself is measured in bench/)."""
    config = FakeOllamaConfig(token_delay_s=0.01, load_delay_s=0)
    tokens = 100

    async def scenario(url: str) -> tuple[list[tuple[str, int]], list[int]]:
        limits = httpx.Limits(max_connections=64)
        events: list[tuple[str, int]] = []
        async with httpx.AsyncClient(base_url=url, timeout=30, limits=limits) as client:
            await client.post("/api/generate", json={"model": MODEL})  # load first

            async def one(i: int) -> int:
                body = {"model": MODEL, "prompt": f"p{i}", "options": {"num_predict": tokens}}
                lines = 0
                async with client.stream("POST", "/api/generate", json=body) as resp:
                    async for line in resp.aiter_lines():
                        if not line:
                            continue
                        lines += 1
                        if lines == 1:
                            events.append(("first", i))
                events.append(("last", i))
                return lines

            counts = await asyncio.gather(*(one(i) for i in range(32)))
        return events, list(counts)

    with serve_in_thread(config) as srv:
        events, counts = asyncio.run(scenario(srv.url))
    assert counts == [tokens + 1] * 32
    kinds = [kind for kind, _ in events]
    assert kinds[:32] == ["first"] * 32, f"a stream ended before all had started: {events[:40]}"


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
