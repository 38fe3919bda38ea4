"""A real OpenAI-compatible model server for the tests: llama-cpp-python's ``llama_cpp.server`` (from its own
venv, ``make llama``) serving the tiny random-weight llama written by :mod:`tests.realserver.tiny_model`.

Fixtures:

- ``tiny_model``: the model file, written once per session;
- ``llama_command``: the server's command line for a model and a port (what the agent supervises);
- ``real_server``: one server for the session, up (``GET /v1/models`` answers): a :class:`RealServer`
  with its ``base_url`` (no ``/v1``) and the ``model`` name it serves. For the agent's ``openai`` backend
  tests as much as for these. :func:`running` starts another one (a test that kills its server, one with a
  longer context for long streams).

Without ``.venv/llama`` a test using them is skipped, or fails under ``CI=true`` (the Makefile builds it).
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from shared.tools.devstack import free_port
from tests.realserver.tiny_model import TINY_MODEL_NAME, write_tiny_llama
from tests.required_tools import require_tool
from tests.servers import wait_until

LLAMA_PYTHON = Path(sys.prefix) / "llama" / "bin" / "python"  # .venv/llama, beside the project's .venv
START_TIMEOUT_S = 60.0


@dataclass(frozen=True)
class RealServer:
    """A running ``llama_cpp.server``: ``base_url`` is ``http://127.0.0.1:PORT`` (its API is under ``/v1``)."""

    base_url: str
    model: str
    process: subprocess.Popen[bytes]
    log: Path


def llama_python() -> str:
    return str(require_tool(LLAMA_PYTHON, "llama"))


def server_argv(python: str, model: Path, port: int, *, n_ctx: int = 512) -> list[str]:
    """``llama_cpp.server`` serving ``model`` as ``tiny-llama`` on 127.0.0.1:``port``, one thread (2 cores here).
    A generation ends when the context is full: at most ``n_ctx`` tokens, prompt included."""
    return [
        python,
        "-m",
        "llama_cpp.server",
        "--model",
        str(model),
        "--model_alias",
        TINY_MODEL_NAME,
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--n_ctx",
        str(n_ctx),
        "--n_threads",
        "1",
    ]


def answers(base_url: str) -> bool:
    try:
        return httpx.get(base_url + "/v1/models", timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_tiny_llama(tmp_path_factory.mktemp("model") / "tiny-llama.gguf")


@pytest.fixture
def llama_command(tiny_model: Path) -> Callable[[int], list[str]]:
    """``llama_command(port)``: the real server's command line (skips, or fails under CI, without the venv)."""
    python = llama_python()
    return lambda port: server_argv(python, tiny_model, port)


@contextlib.contextmanager
def running(argv: list[str], log: Path) -> Iterator[RealServer]:
    """The server ``argv`` starts, up, in a process group of its own with its output unbuffered in ``log``
    (its "Disconnected from client" lines show when it saw a client go); stopped after the block."""
    port = argv[argv.index("--port") + 1]
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    with log.open("wb") as out:
        process = subprocess.Popen(
            argv, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env, start_new_session=True
        )
    server = RealServer(f"http://127.0.0.1:{port}", TINY_MODEL_NAME, process, log)
    try:
        wait_until(
            lambda: (process.poll() is None and answers(server.base_url)) or process.poll() is not None,
            START_TIMEOUT_S,
            "llama_cpp.server up",
        )
        if process.poll() is not None:
            pytest.fail(f"llama_cpp.server exited with {process.returncode}:\n{log.read_text()[-2000:]}")
        yield server
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@pytest.fixture(scope="session")
def real_server(tiny_model: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[RealServer]:
    log = tmp_path_factory.mktemp("llama-server") / "server.log"
    with running(server_argv(llama_python(), tiny_model, free_port()), log) as server:
        yield server
