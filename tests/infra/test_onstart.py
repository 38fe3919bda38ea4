"""The box's start-up script: shellcheck-clean, and idempotent when run again (as Vast does on every start).

It runs against stubs on PATH: ``ollama serve`` starts gpuq's protocol-faithful Ollama stand-in (so the
script's pulls and loads go over real HTTP), ``python -m agent`` is a stand-in agent that records its start.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest

from tests.required_tools import require_tool

ROOT = Path(__file__).resolve().parents[2]
ONSTART = ROOT / "infra" / "agent" / "onstart.sh"
SCRIPTS = [ONSTART, ROOT / "infra" / "deploy.sh"]

OLLAMA_STUB = """#!/bin/sh
echo "$$ $*" >> "$STUB_LOG/ollama.calls"
[ "$1" = serve ] || exit 0
exec "$REAL_PYTHON" -m shared.fakes.ollama --port "${OLLAMA_HOST##*:}" --models "" \\
    --load-delay-ms 20 --pull-delay-ms 20 --keep-alive 5m
"""
AGENT_STUB = """#!/bin/sh
echo "$$ $*" >> "$STUB_LOG/python.calls"
trap 'exit 0' TERM
while :; do sleep 0.05; done
"""


def test_the_scripts_pass_shellcheck() -> None:
    shellcheck = require_tool("shellcheck", "tools")
    proc = subprocess.run([shellcheck, "--severity=style", *map(str, SCRIPTS)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class Box:
    root: Path
    env: dict[str, str]
    groups: list[int] = field(default_factory=list)

    @property
    def logs(self) -> Path:
        return self.root / "log"

    def calls(self, stub: str) -> list[str]:
        path = self.root / "stubs" / f"{stub}.calls"
        return path.read_text().splitlines() if path.exists() else []

    def onstart(self, *args: str) -> subprocess.CompletedProcess[str]:
        proc = subprocess.Popen(
            ["bash", str(ONSTART), *args],
            env=self.env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,
        )
        self.groups.append(proc.pid)  # what it starts stays in this process group: killed at teardown
        out, _ = proc.communicate(timeout=60)
        return subprocess.CompletedProcess(proc.args, proc.returncode, out, "")

    def pid(self, name: str) -> int:
        return int((self.root / "state" / f"{name}.pid").read_text())

    def ollama(self, path: str) -> dict[str, object]:
        response = httpx.get(f"http://{self.env['OLLAMA_HOST']}{path}", timeout=5)
        response.raise_for_status()
        body: dict[str, object] = response.json()
        return body


@pytest.fixture
def box(tmp_path: Path) -> Iterator[Box]:
    stubs = tmp_path / "bin"
    stubs.mkdir()
    for name, text in (("ollama", OLLAMA_STUB), ("python", AGENT_STUB)):
        (stubs / name).write_text(text)
        (stubs / name).chmod(0o755)
    (tmp_path / "stubs").mkdir()
    env = {
        "PATH": f"{stubs}:/usr/bin:/bin",
        "HOME": str(tmp_path),
        "STUB_LOG": str(tmp_path / "stubs"),
        "REAL_PYTHON": sys.executable,
        "PYTHONPATH": str(ROOT),
        "GPUQ_HOME": str(tmp_path),
        "GPUQ_LOG_DIR": str(tmp_path / "log"),
        "GPUQ_STATE_DIR": str(tmp_path / "state"),
        "OLLAMA_HOST": f"127.0.0.1:{_free_port()}",
        "OLLAMA_PRELOAD_MODELS": "llama3.2:1b, qwen2.5:0.5b,bad$name",
        "GPUQ_OLLAMA_WAIT_S": "30",
    }
    running = Box(tmp_path, env)
    try:
        yield running
    finally:
        for group in running.groups:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(group, signal.SIGKILL)


def test_onstart_starts_everything_once_and_a_rerun_changes_nothing(box: Box) -> None:
    first = box.onstart()
    assert first.returncode == 0, first.stdout
    assert [c.split(" ", 1)[1] for c in box.calls("ollama")] == ["serve"]
    assert [c.split(" ", 1)[1] for c in box.calls("python")] == ["-m agent"]
    log = (box.logs / "onstart.log").read_text()
    for line in (
        "gpuq-onstart: model loaded: llama3.2:1b",
        "gpuq-onstart: model loaded: qwen2.5:0.5b",
        "gpuq-onstart: error: not a model name: 'bad$name'",
        "gpuq-onstart: ready",
    ):
        assert line in log
    # The models are pulled, loaded, and kept loaded (keep_alive -1: no expiry), though the server's default is 5m.
    tags = {m["name"] for m in box.ollama("/api/tags")["models"]}  # type: ignore[attr-defined]
    assert {"llama3.2:1b", "qwen2.5:0.5b"} <= tags
    loaded = {m["name"]: m["expires_at"] for m in box.ollama("/api/ps")["models"]}  # type: ignore[attr-defined]
    assert set(loaded) == {"llama3.2:1b", "qwen2.5:0.5b"}
    assert all(int(str(expiry)[:4]) > time.gmtime().tm_year + 100 for expiry in loaded.values()), loaded
    pids = (box.pid("ollama"), box.pid("agent"))

    second = box.onstart()
    assert second.returncode == 0, second.stdout
    assert len(box.calls("ollama")) == 1 and len(box.calls("python")) == 1
    assert (box.pid("ollama"), box.pid("agent")) == pids
    assert "ollama already running" in second.stdout and "agent already running" in second.stdout
    assert (box.logs / "onstart.log").read_text().count("gpuq-onstart: ready") == 2


def test_a_rerun_restarts_only_what_died_even_if_its_pid_was_reused(box: Box) -> None:
    assert box.onstart().returncode == 0
    os.kill(box.pid("agent"), signal.SIGTERM)
    deadline = time.monotonic() + 10
    while Path(f"/proc/{box.pid('agent')}").exists() and "Z" not in _state(box.pid("agent")):
        assert time.monotonic() < deadline, "the stub agent did not stop"
        time.sleep(0.02)
    third = box.onstart()
    assert third.returncode == 0, third.stdout
    assert len(box.calls("python")) == 2 and len(box.calls("ollama")) == 1
    # A pid file left by a previous container whose pid now belongs to something else does not count.
    (box.root / "state" / "agent.pid").write_text(str(os.getpid()))
    assert box.onstart().returncode == 0
    assert len(box.calls("python")) == 3


def test_foreground_mode_becomes_the_agent(box: Box) -> None:
    proc = subprocess.Popen(
        ["bash", str(ONSTART), "--foreground"],
        env=box.env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    box.groups.append(proc.pid)
    deadline = time.monotonic() + 30
    while "gpuq-onstart: ready" not in _read(box.logs / "onstart.log") or not box.calls("python"):
        assert proc.poll() is None, "onstart --foreground exited"
        assert time.monotonic() < deadline, _read(box.logs / "onstart.log")
        time.sleep(0.05)
    assert box.calls("python")[0].split(" ", 1) == [str(proc.pid), "-m agent"]  # exec'd: same pid
    assert box.pid("agent") == proc.pid
    proc.terminate()
    assert proc.wait(timeout=10) == 0


def _state(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return "X"


def _read(path: Path) -> str:
    return path.read_text() if path.exists() else ""


def test_the_stub_ollama_is_the_real_stand_in() -> None:
    """Guard for the test above: the stub's flags exist on the stand-in (a typo would fail far from here)."""
    proc = subprocess.run(
        [sys.executable, "-m", "shared.fakes.ollama", "--help"], capture_output=True, text=True, cwd=ROOT
    )
    assert proc.returncode == 0
    for option in ("--port", "--models", "--load-delay-ms", "--pull-delay-ms", "--keep-alive"):
        assert option in proc.stdout


def test_with_a_supervised_server_only_the_agent_is_started(box: Box) -> None:
    box.env["GPUQ_AGENT_SERVER_COMMAND"] = "ollama serve"  # the agent starts it (docs/model-server.md)
    done = box.onstart()
    assert done.returncode == 0, done.stdout
    assert box.calls("ollama") == []  # neither started nor asked for models here: the agent does both
    deadline = time.monotonic() + 10  # the agent is started in the background: onstart returns before it runs
    while not box.calls("python"):
        assert time.monotonic() < deadline, "the agent was never started"
        time.sleep(0.02)
    assert [c.split(" ", 1)[1] for c in box.calls("python")] == ["-m agent"]
    log = (box.logs / "onstart.log").read_text()
    assert "the agent starts and supervises the model server: ollama serve" in log and "model loaded" not in log
