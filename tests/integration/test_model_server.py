"""The model-server supervisor against a scripted stand-in process (tests/integration/scripted_server.py):
log patterns, restarts with backoff, giving up, the start-up tail, stopping the whole process group.

The stand-in says it is up by writing its pid to a file; the supervisor's probe (the API check it makes
once the ``on_load`` line came, or polls without one) reads that file.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

from agent.model_server import ModelServer, ServerConfig, ServerPhase
from agent.server_log import LogPatterns
from shared.boxes.providers.local import process_alive

SCRIPT = Path(__file__).with_name("scripted_server.py")


class Run:
    """One supervised stand-in: its files, its supervisor, every (phase, reason) it went through."""

    def __init__(self, tmp: Path, *args: str, on_load: str = "", **config: Any) -> None:
        self.starts = tmp / "starts"
        self.up_file = tmp / "up"
        argv = (sys.executable, str(SCRIPT), "--starts", str(self.starts), "--up-file", str(self.up_file), *args)
        patterns = LogPatterns.parse(on_load, "CUDA out of memory", "Downloading|Loading")
        self.config = ServerConfig(argv=argv, patterns=patterns, **{"restart_backoff_s": 0.05, **config})
        self.changes: list[tuple[ServerPhase, str]] = []
        self.server = ModelServer(self.config, probe=self._probe, on_change=lambda p, r: self.changes.append((p, r)))

    async def _probe(self) -> bool:
        return self.up_file.exists() and self.up_file.read_text() == str(self.server.pid)

    def start_count(self) -> int:
        return len(self.starts.read_text().splitlines()) if self.starts.exists() else 0

    def reasons(self) -> list[str]:
        return [reason for _, reason in self.changes]


def supervised(test: Callable[[Run, asyncio.Task[None]], Awaitable[None]], run: Run) -> None:
    """Run ``test`` while the supervisor runs; the supervisor is stopped (and awaited) after it."""

    async def main() -> None:
        task = asyncio.create_task(run.server.run())
        try:
            await asyncio.wait_for(test(run, task), timeout=30)
        finally:
            await run.server.stop()
            await asyncio.wait_for(task, timeout=15)

    asyncio.run(main())


def test_up_by_its_log_line_then_its_api_and_stopped_on_request(tmp_path: Path) -> None:
    run = Run(
        tmp_path,
        "--line",
        "Loading weights",
        "--line",
        "INFO: Application startup complete.",
        "--stay",
        on_load="startup complete",
    )

    async def test(run: Run, task: asyncio.Task[None]) -> None:
        assert await run.server.wait_up()
        pid = run.server.pid
        assert pid is not None and process_alive(pid, None)
        assert run.changes[-2:] == [(ServerPhase.LOADING, "Loading weights"), (ServerPhase.UP, "model server up")]
        assert "tail" not in run.server.describe()  # serving: its output is not shown on /health
        await run.server.stop()
        await task
        assert run.server.phase is ServerPhase.STOPPED and not process_alive(pid, None)

    supervised(test, run)


def test_without_an_on_load_pattern_its_api_is_polled(tmp_path: Path) -> None:
    run = Run(tmp_path, "--line", "whatever it prints", "--stay")

    async def test(run: Run, task: asyncio.Task[None]) -> None:
        assert await run.server.wait_up()
        assert run.start_count() == 1 and run.server.restarts == 0

    supervised(test, run)


def test_an_on_error_line_fails_the_server_at_once_without_a_restart(tmp_path: Path) -> None:
    lines = [arg for i in range(60) for arg in ("--line", f"llm_load_tensors: layer {i}")]
    run = Run(tmp_path, *lines, "--line", "torch.OutOfMemoryError: CUDA out of memory. Tried 2 GiB", "--stay")

    async def test(run: Run, task: asyncio.Task[None]) -> None:
        assert not await run.server.wait_up()
        await task
        assert run.server.phase is ServerPhase.FAILED
        assert run.server.reason == "torch.OutOfMemoryError: CUDA out of memory. Tried 2 GiB"
        assert run.start_count() == 1 and run.server.restarts == 0
        assert run.server.pid is not None and not process_alive(run.server.pid, None)
        tail = run.server.describe()["tail"]  # what /health shows of a box that cannot come up
        assert isinstance(tail, list) and len(tail) == 20 and tail[-1] == run.server.reason
        assert len(run.server.tail.lines()) == 40 and run.server.tail.lines()[0] == "llm_load_tensors: layer 21"

    supervised(test, run)


def test_a_crashing_server_is_restarted_with_a_doubling_backoff(tmp_path: Path) -> None:
    run = Run(tmp_path, "--fail-starts", "2", "--stay", restart_backoff_s=0.1, max_restarts=3)

    async def test(run: Run, task: asyncio.Task[None]) -> None:
        assert await run.server.wait_up()
        assert run.start_count() == 3 and run.server.restarts == 2
        restarts = [r for r in run.reasons() if "restart" in r]
        assert restarts == [
            "the model server exited with code 3; restart 1 of 3 in 0.1s",
            "the model server exited with code 3; restart 2 of 3 in 0.2s",
        ]

    supervised(test, run)


def test_past_its_last_restart_the_server_has_failed(tmp_path: Path) -> None:
    run = Run(tmp_path, "--fail-starts", "99", "--stay", max_restarts=2)

    async def test(run: Run, task: asyncio.Task[None]) -> None:
        assert not await run.server.wait_up()
        await task
        assert run.server.phase is ServerPhase.FAILED
        assert run.server.reason == "the model server exited with code 3; gave up after 2 restart(s)"
        assert run.start_count() == 3

    supervised(test, run)


def test_a_server_killed_while_serving_comes_back(tmp_path: Path) -> None:
    run = Run(tmp_path, "--stay")

    async def test(run: Run, task: asyncio.Task[None]) -> None:
        assert await run.server.wait_up()
        first = run.server.pid
        assert first is not None
        os.kill(first, signal.SIGKILL)
        await run.server.wait_down()
        assert run.server.phase is ServerPhase.STARTING and "was killed by SIGKILL" in run.server.reason
        assert await run.server.wait_up()
        assert run.server.pid != first and run.server.restarts == 1 and run.server.last_exit == -9

    supervised(test, run)


class _SeenLine(logging.Handler):
    """Sets ``seen`` when the server's output logger logs a line containing ``text`` (in the loop's thread)."""

    def __init__(self, text: str) -> None:
        super().__init__(logging.INFO)
        self.text = text
        self.seen = asyncio.Event()

    def emit(self, record: logging.LogRecord) -> None:
        if self.text in record.getMessage():
            self.seen.set()


def test_once_up_an_error_line_does_not_take_the_server_down(tmp_path: Path) -> None:
    go = tmp_path / "go"
    late = "request 7: prompt='why do I get CUDA out of memory?'"
    run = Run(tmp_path, "--go-file", str(go), "--late-line", late, "--stay")
    output = logging.getLogger("gpuq.agent.server.output")
    handler = _SeenLine(late)
    output.addHandler(handler)
    level = output.level
    output.setLevel(logging.INFO)

    async def test(run: Run, task: asyncio.Task[None]) -> None:
        assert await run.server.wait_up()
        go.write_text("")
        await handler.seen.wait()
        assert run.server.phase is ServerPhase.UP and late not in run.server.tail.lines()

    try:
        supervised(test, run)
    finally:
        output.removeHandler(handler)
        output.setLevel(level)


def test_progress_redraws_become_the_loading_reason(tmp_path: Path) -> None:
    bars = [
        "Downloading model.gguf:  10%|\u2588         | 1G/9G\r",
        "Downloading model.gguf:  43%|\u2588\u2588\u2588\u2588 | 4G/9G\r",
    ]
    run = Run(tmp_path, *(a for bar in bars for a in ("--line", bar)), "--stay")

    async def test(run: Run, task: asyncio.Task[None]) -> None:
        assert await run.server.wait_up()
        loading = [reason for phase, reason in run.changes if phase is ServerPhase.LOADING]
        assert loading == ["Downloading model.gguf: 10%| | 1G/9G", "Downloading model.gguf: 43%| | 4G/9G"]

    supervised(test, run)


def test_not_up_within_the_ready_timeout_has_failed(tmp_path: Path) -> None:
    run = Run(tmp_path, "--line", "Loading forever", "--stay", on_load="never printed", ready_timeout_s=0.5)

    async def test(run: Run, task: asyncio.Task[None]) -> None:
        assert not await run.server.wait_up()
        await task
        assert run.server.reason == "not up within server_ready_timeout_s=0.5s"
        assert run.server.pid is not None and not process_alive(run.server.pid, None)

    supervised(test, run)


def test_a_command_that_cannot_start_has_failed(tmp_path: Path) -> None:
    config = ServerConfig(argv=(str(tmp_path / "no-such-server"), "serve"))
    server = ModelServer(config, probe=lambda: asyncio.sleep(0, result=True))

    async def main() -> None:
        await asyncio.wait_for(server.run(), timeout=10)

    asyncio.run(main())
    assert server.phase is ServerPhase.FAILED and server.reason.startswith("cannot start")


def test_stop_takes_the_whole_process_group_even_when_it_ignores_sigterm(tmp_path: Path) -> None:
    child_file = tmp_path / "child"
    run = Run(tmp_path, "--ignore-term", "--child-pid-file", str(child_file), "--stay", stop_grace_s=0.3)

    async def test(run: Run, task: asyncio.Task[None]) -> None:
        assert await run.server.wait_up()
        pid, child = run.server.pid, int(child_file.read_text())
        assert pid is not None and process_alive(child, None)
        await run.server.stop()
        await task
        assert not process_alive(pid, None)
        for _ in range(200):  # the orphaned child is reaped by init, not by us: watch /proc until it has been
            if not process_alive(child, None):
                break
            await asyncio.sleep(0.01)
        assert not process_alive(child, None)

    supervised(test, run)


def test_the_server_gets_the_environment_without_the_agents_settings(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("GPUQ_AGENT_SECRET", "never-for-the-server")
    monkeypatch.setenv("HF_TOKEN", "the-server-needs-this")
    env = ServerConfig(argv=("x",)).child_env()
    assert env["HF_TOKEN"] == "the-server-needs-this" and not any(k.startswith("GPUQ_") for k in env)
