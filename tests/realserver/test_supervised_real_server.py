"""The supervised-server path with a real model server: llama-cpp-python's server started, watched and
restarted by the agent's supervisor, with the default ``on_error`` patterns against its real output."""

from __future__ import annotations

import asyncio
import contextlib
import os
import shlex
import signal
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from agent.app import build_app
from agent.model_server import ModelServer, ServerConfig, ServerPhase
from shared.boxes.providers.local import process_alive
from shared.fakes.serving import serve_app_in_thread
from shared.settings import AgentSettings
from shared.tools.devstack import free_port
from tests.realserver.tiny_model import TINY_MODEL_NAME
from tests.servers import wait_until

ON_LOAD = "Uvicorn running on"  # uvicorn's line once llama_cpp.server has loaded its model and listens


def supervisor(command: list[str], base_url: str, **settings: Any) -> ModelServer:
    """A supervisor configured as the agent would be from its settings (default on_error, on_info)."""
    config = ServerConfig.from_settings(
        AgentSettings(server_command=shlex.join(command), server_on_load=ON_LOAD, **settings)
    )
    assert config is not None

    async def probe() -> bool:
        async with httpx.AsyncClient() as client:
            return (await client.get(base_url + "/v1/models", timeout=2)).status_code == 200

    return ModelServer(config, probe=probe)


def run_supervised(server: ModelServer, test: Callable[[], Any]) -> None:
    async def main() -> None:
        task = asyncio.create_task(server.run())
        try:
            await asyncio.wait_for(test(), timeout=90)
        finally:
            await server.stop()
            await asyncio.wait_for(task, timeout=20)

    asyncio.run(main())


async def one_completion(base_url: str) -> str:
    body = {"model": TINY_MODEL_NAME, "messages": [{"role": "user", "content": "Hi"}], "max_tokens": 3}
    async with httpx.AsyncClient() as client:
        answer = await client.post(base_url + "/v1/chat/completions", json=body, timeout=60)
    text: str = answer.json()["choices"][0]["message"]["content"]
    return text


def test_started_up_by_its_log_line_killed_restarted_with_backoff_and_serving_again(
    llama_command: Callable[[int], list[str]],
) -> None:
    port = free_port()
    base_url = f"http://127.0.0.1:{port}"
    server = supervisor(llama_command(port), base_url, server_restart_backoff_s=0.2)

    async def test() -> None:
        assert await server.wait_up()
        assert await one_completion(base_url)
        first = server.pid
        assert first is not None
        os.kill(first, signal.SIGKILL)
        await server.wait_down()
        assert server.phase is ServerPhase.STARTING and "was killed by SIGKILL" in server.reason
        assert await server.wait_up()
        assert server.restarts == 1 and server.pid != first and not process_alive(first, None)
        assert await one_completion(base_url)

    run_supervised(server, test)


def test_a_model_it_cannot_load_fails_at_its_first_error_line_without_a_restart(
    llama_command: Callable[[int], list[str]], tmp_path: Path
) -> None:
    broken = tmp_path / "broken.gguf"
    broken.write_bytes(b"GGUF but not a model")
    port = free_port()
    command = [str(broken) if arg.endswith(".gguf") else arg for arg in llama_command(port)]
    server = supervisor(command, f"http://127.0.0.1:{port}")

    async def test() -> None:
        assert not await server.wait_up()
        assert server.phase is ServerPhase.FAILED and server.restarts == 0
        # llama.cpp's own line, matched by the default pattern "error loading model"
        assert server.reason.startswith("llama_model_load: error loading model:")
        assert any("failed to read header" in line for line in server.tail.lines())

    run_supervised(server, test)


@pytest.fixture
def agent_of() -> Iterator[Callable[..., str]]:
    with contextlib.ExitStack() as stack:

        def start(**settings: Any) -> str:
            fields: dict[str, Any] = {"secret": "s", "instance_id": "real-box", "provider": "none", **settings}
            return stack.enter_context(serve_app_in_thread(build_app(AgentSettings(**fields))))

        yield start


def test_the_agent_brings_the_real_server_up_and_follows_it_through_a_crash(
    agent_of: Callable[..., str], llama_command: Callable[[int], list[str]]
) -> None:
    port = free_port()
    url = agent_of(
        server_command=shlex.join(llama_command(port)),
        server_on_load=ON_LOAD,
        server_restart_backoff_s=0.5,
        backend="openai",
        backend_url=f"http://127.0.0.1:{port}",
        preload_models=TINY_MODEL_NAME,
        idle_grace_s=3600,
    )

    def health() -> dict[str, Any]:
        body: dict[str, Any] = httpx.get(url + "/health", timeout=10).json()
        return body

    wait_until(lambda: health()["phase"] == "ready", 60, "the agent ready with its real server")
    pid = health()["server"]["pid"]
    os.kill(pid, signal.SIGKILL)
    wait_until(lambda: health()["phase"] == "starting_server", 20, "the agent back to starting")
    wait_until(lambda: health()["phase"] == "ready", 60, "ready again")
    assert health()["server"]["restarts"] == 1 and health()["server"]["pid"] != pid
