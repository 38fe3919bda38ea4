"""The fake Vast cloud and the provider the Vast provider tests drive: boxes are real local processes."""

from __future__ import annotations

import asyncio
import sys
import time
from collections.abc import Coroutine
from pathlib import Path
from typing import Any, TypeVar

import httpx

from shared.boxes.providers.vast import RetryPolicy, VastProvider, build_vast_provider
from shared.fakes.vast import FakeVastConfig, FakeVastServer
from shared.models import Instance, InstanceState
from shared.settings import VastSettings
from shared.store.base import JobStore
from tests.servers import wait_until

__all__ = [
    "AGENT",
    "FAST",
    "KEY",
    "SECRET",
    "TINY",
    "fake_cloud_config",
    "get_json",
    "healthy",
    "provider",
    "run",
    "run_get",
    "wait_state",
]

T = TypeVar("T")
KEY = "acct-key-for-tests"
TINY = "gpuq-test/tiny-http"
AGENT = "gpuq/agent:latest"
SECRET = "vast-agent-secret"

TINY_SERVER = """
import json, os, signal, sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
SEEN = {k: os.environ.get(k) for k in ("CONTAINER_ID", "GPUQ_AGENT_PORT", "GPUQ_AGENT_INSTANCE_ID",
                                        "GPUQ_AGENT_PROVIDER", "VAST_URL", "FOO")}
SEEN["has_container_key"] = bool(os.environ.get("CONTAINER_API_KEY"))
class H(BaseHTTPRequestHandler):
    def do_GET(self):
        body = json.dumps(SEEN).encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    def log_message(self, *args):
        pass
ThreadingHTTPServer((os.environ["GPUQ_AGENT_HOST"], int(os.environ["GPUQ_AGENT_PORT"])), H).serve_forever()
"""


def fake_cloud_config(tmp: Path, ollama_url: str) -> FakeVastConfig:
    """A fake Vast whose boxes run TINY_SERVER (or, for the AGENT image, the real agent)."""
    script = tmp / "tiny_http.py"
    script.write_text(TINY_SERVER)
    return FakeVastConfig(
        api_key=KEY,
        command=[sys.executable, str(script)],
        image_commands={AGENT: [sys.executable, "-m", "agent"]},
        extra_env={"GPUQ_AGENT_OLLAMA_URL": ollama_url, "GPUQ_LOG_LEVEL": "WARNING"},
        schedule_delay_s=0.05,
        loading_delay_s=0.1,
        restart_loading_delay_s=0.05,
        stop_delay_s=0.05,
        stop_grace_s=3.0,
        log_dir=tmp / "logs",
    )


def run(coro: Coroutine[Any, Any, T]) -> T:
    """One provider call in a fresh event loop, as the (sync) control plane makes them."""
    return asyncio.run(coro)


def run_get(p: VastProvider, instance_id: str = "vast-1") -> Instance:
    instance = run(p.get(instance_id))
    assert instance is not None
    return instance


FAST = RetryPolicy(max_attempts=5, base_delay_s=0.01, max_delay_s=0.05, timeout_s=10.0, min_interval_s={})


def provider(
    fake: FakeVastServer,
    tmp_path: Path,
    *,
    key: str = KEY,
    retry: RetryPolicy = FAST,
    logical_id: str = "vast-1",
    store: JobStore | None = None,
    **settings: Any,
) -> VastProvider:
    base: dict[str, Any] = {
        "api_key": key,
        "url": fake.url,
        "default_image": TINY,
        "onstart": "",
        "restart_deadline_s": 30.0,
        "default_disk_gb": 20.0,
    }
    base.update(settings)
    return build_vast_provider(
        VastSettings(**base),
        logical_id=logical_id,
        state_dir=tmp_path / "vast",
        retry=retry,
        agent_env={
            "GPUQ_AGENT_SECRET": SECRET,
            "GPUQ_AGENT_PRELOAD_MODELS": "llama3.2:1b",
            "GPUQ_AGENT_IDLE_GRACE_S": "3600",
        },
        observe_ttl_s=0.0,
        store=store,
    )


def wait_state(p: VastProvider, state: InstanceState, timeout_s: float = 15.0, instance_id: str = "vast-1") -> Any:
    seen: list[Any] = []

    def check() -> bool:
        seen[:] = [run(p.get(instance_id))]
        return (
            seen[0] is not None
            and seen[0].state is state
            and (state is not InstanceState.RUNNING or seen[0].agent_url is not None)
        )

    wait_until(check, timeout_s, f"{instance_id} {state.value}", poll_s=0.05)
    return seen[0]


def get_json(url: str) -> dict[str, Any]:
    deadline = time.monotonic() + 10
    while True:
        try:
            return dict(httpx.get(url, timeout=2.0).json())
        except httpx.HTTPError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.02)


def healthy(url: str) -> bool:
    try:
        return httpx.get(url + "/health", timeout=2.0).status_code == 200
    except httpx.HTTPError:
        return False
