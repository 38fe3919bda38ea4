"""The agent starting and supervising its model server (GPUQ_AGENT_SERVER_COMMAND) over real sockets: the
Ollama stand-in as the server it starts, a recorder of its ready/failed announcements as the trigger."""

from __future__ import annotations

import json
import os
import signal
import sys
import threading
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest

from agent.app import build_app
from shared.fakes.serving import serve_app_in_thread
from shared.jobs.events import AgentJob
from shared.security.signing import RequestSigner
from shared.settings import AgentSettings
from shared.tools.devstack import free_port
from tests.servers import wait_until

SECRET = "agent-test-secret"
MODEL = "llama3.2:1b"
SCRIPT = Path(__file__).with_name("scripted_server.py")


class Announcements:
    """The trigger function, reduced to recording what agents announce (``ready``, ``failed``)."""

    def __init__(self) -> None:
        self.events: list[dict[str, Any]] = []
        self.cond = threading.Condition()
        sink = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                with sink.cond:
                    sink.events.append(body)
                    sink.cond.notify_all()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"{}")

            def log_message(self, format: str, *args: Any) -> None:
                return

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/trigger"

    def wait(self, count: int, timeout: float = 20) -> list[dict[str, Any]]:
        with self.cond:
            assert self.cond.wait_for(lambda: len(self.events) >= count, timeout), self.events
            return list(self.events)


@pytest.fixture
def announcements() -> Iterator[Announcements]:
    sink = Announcements()
    yield sink
    sink.server.shutdown()
    sink.server.server_close()


@pytest.fixture
def agent_of(announcements: Announcements) -> Iterator[Callable[..., str]]:
    """Start agents that supervise a server (settings as given); each stops, with its server, after the test."""
    with serve_apps() as start:
        yield lambda **settings: start(ready_url=announcements.url, **settings)


class serve_apps:
    def __enter__(self) -> Callable[..., str]:
        import contextlib

        self._stack = contextlib.ExitStack()

        def start(**settings: Any) -> str:
            fields: dict[str, Any] = {
                "secret": SECRET,
                "instance_id": "test-box",
                "provider": "none",
                "preload_models": MODEL,
                "idle_grace_s": 3600,
                "report_interval_s": 0.05,
                **settings,
            }
            return self._stack.enter_context(serve_app_in_thread(build_app(AgentSettings(**fields))))

        return start

    def __exit__(self, *exc: object) -> None:
        self._stack.close()


def stand_in(port: int) -> str:
    """The Ollama stand-in as a command line the agent runs (it prints 'fake ollama listening on …')."""
    return f"{sys.executable} -m shared.fakes.ollama --port {port} --load-delay-ms 20 --models {MODEL}"


def health(url: str) -> dict[str, Any]:
    body: dict[str, Any] = httpx.get(url + "/health", timeout=10).json()
    return body


def signed_job(url: str) -> httpx.Response:
    spec = AgentJob(
        job_id="job_early", attempt=1, model=MODEL, prompt="hi", timeout_s=30, report_url=url, report_token="t"
    )
    body = spec.model_dump_json().encode()
    return httpx.post(url + "/v1/jobs", content=body, headers=RequestSigner(SECRET).sign("POST", "/v1/jobs", body))


def test_the_agent_starts_its_server_and_is_ready_by_its_log_line(
    agent_of: Callable[..., str], announcements: Announcements
) -> None:
    port = free_port()
    url = agent_of(server_command=stand_in(port), ollama_url=f"http://127.0.0.1:{port}", server_on_load="listening on")
    wait_until(lambda: health(url)["status"] == "ready", 20, "the supervised server up and the model loaded")
    body = health(url)
    assert body["phase"] == "ready" and body["reason"] == "models loaded"
    assert body["server"]["restarts"] == 0 and body["server"]["pid"] > 0 and "tail" not in body["server"]
    ready = announcements.wait(1)[0]
    assert ready["event"] == "ready" and ready["instance_id"] == "test-box" and ready["model_loaded_s"] >= 0


def test_a_killed_server_is_restarted_and_the_box_is_ready_and_announced_again(
    agent_of: Callable[..., str], announcements: Announcements
) -> None:
    port = free_port()
    url = agent_of(server_command=stand_in(port), ollama_url=f"http://127.0.0.1:{port}", server_restart_backoff_s=1.0)
    wait_until(lambda: health(url)["status"] == "ready", 20, "ready")
    first = health(url)["server"]["pid"]
    os.kill(first, signal.SIGKILL)
    wait_until(lambda: health(url)["phase"] == "starting_server", 10, "the box back to starting")
    refused = signed_job(url)  # while the server restarts the box refuses work, saying why
    assert refused.status_code == 503 and refused.json()["error"]["code"] == "starting_instance"
    assert "was killed by SIGKILL" in refused.json()["error"]["message"]
    wait_until(lambda: health(url)["status"] == "ready", 20, "ready again")
    server = health(url)["server"]
    assert server["restarts"] == 1 and server["pid"] != first and server["last_exit"] == -9
    again = announcements.wait(2)[1]
    assert again["event"] == "ready" and "model_loaded_s" not in again  # the cold start was measured once


def test_a_server_that_cannot_come_up_fails_the_box_and_says_why(
    agent_of: Callable[..., str], announcements: Announcements, tmp_path: Path
) -> None:
    command = (
        f"{sys.executable} {SCRIPT} --starts {tmp_path / 'starts'} --line 'loading model tensors' "
        "--line 'ggml_cuda: CUDA error: out of memory' --stay"
    )
    url = agent_of(server_command=command, ollama_url=f"http://127.0.0.1:{free_port()}")
    wait_until(lambda: health(url)["phase"] == "failed", 20, "the box failed")
    body = health(url)
    assert body["status"] == "model_server_unavailable" and body["reason"] == "ggml_cuda: CUDA error: out of memory"
    assert body["server"]["tail"] == ["loading model tensors", "ggml_cuda: CUDA error: out of memory"]
    assert body["error"]["code"] == "model_server_unavailable"
    failed = announcements.wait(1)[0]
    assert failed == {"instance_id": "test-box", "event": "failed", "reason": "ggml_cuda: CUDA error: out of memory"}
    assert (tmp_path / "starts").read_text().count("\n") == 1  # no restart


def test_without_supervision_health_says_its_phase_and_reason(agent_of: Callable[..., str]) -> None:
    url = agent_of(ollama_url=f"http://127.0.0.1:{free_port()}")  # nothing listens there yet
    body = health(url)
    assert body["phase"] == "starting_server" and body["reason"] == "waiting for the model server to answer"
    assert "server" not in body and body["status"] == "starting_instance"
