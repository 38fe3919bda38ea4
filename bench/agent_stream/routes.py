"""The paths to the model, each a ``Route``: how its requests are built and which process is its proxy.

``direct`` is the Ollama stand-in itself; ``GpuqRoute`` is gpuq's agent with the real control plane
behind it (each job put in the store as dispatch leaves it); ``PyWorkerRoute`` is Vast's PyWorker.
``OpenAIRoute`` (``direct-openai``) is the OpenAI-compatible stand-in itself (``/v1/completions``, SSE), the
baseline of the agent on its openai backend (a ``GpuqRoute`` named ``gpuq-openai``). Each route's
``baseline`` names the direct path its ratios are taken against.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Sequence
from typing import Any

from bench.agent_stream.constants import HOST, MODEL
from bench.ndjson_client import build_request
from bench.procs import Proc, tree_cpu_s
from shared.fakes.ollama import fake_completion_text
from shared.jobs.events import AgentJob
from shared.models import Job, new_job_id
from shared.security.signing import RequestSigner, job_token
from shared.states import JobStatus
from shared.store.sqlite import SqliteJobStore
from shared.tools.devstack import DevStack

__all__ = ["GpuqRoute", "OpenAIRoute", "PyWorkerRoute", "Route", "ollama_body", "openai_body"]


def ollama_body(prompt: str, tokens: int) -> dict[str, Any]:
    """What each path sends to the model server (the agent builds the same body itself)."""
    return {"model": MODEL, "stream": True, "keep_alive": -1, "prompt": prompt, "options": {"num_predict": tokens}}


def openai_body(prompt: str, tokens: int) -> dict[str, Any]:
    """What the agent's openai backend sends for the same job (a vLLM client would send the same)."""
    usage = {"include_usage": True}
    return {"model": MODEL, "prompt": prompt, "stream": True, "stream_options": usage, "max_tokens": tokens}


class Route:
    """One way to reach the model: how requests are built, and which process is the proxy."""

    name = "direct"
    baseline = "direct"
    path = "/api/generate"
    sse = False

    def __init__(self, port: int, proxy: Proc | None = None) -> None:
        self.port = port
        self.proxy = proxy

    def prepare(self, prompts: Sequence[str], tokens: int) -> list[bytes]:
        return [build_request(HOST, self.port, self.path, json.dumps(ollama_body(p, tokens)).encode()) for p in prompts]

    async def settle(self) -> None:
        return None

    def cpu_s(self) -> float:
        return self.proxy.cpu_s() if self.proxy is not None else 0.0

    def control_plane_cpu_s(self) -> float:
        return 0.0


class OpenAIRoute(Route):
    name = "direct-openai"
    baseline = "direct-openai"
    path = "/v1/completions"
    sse = True

    def prepare(self, prompts: Sequence[str], tokens: int) -> list[bytes]:
        return [build_request(HOST, self.port, self.path, json.dumps(openai_body(p, tokens)).encode()) for p in prompts]


class GpuqRoute(Route):
    name = "gpuq"
    path = "/v1/stream"

    def __init__(
        self, port: int, proxy: Proc, secret: str, stack: DevStack, functions_pid: int, *, backend: str = "ollama"
    ) -> None:
        super().__init__(port, proxy)
        if backend == "openai":
            self.name, self.baseline = "gpuq-openai", "direct-openai"
        self._stack = stack
        self._store = SqliteJobStore(stack.settings.sqlite_path())
        self._signer = RequestSigner(secret)
        self._functions_pid = functions_pid
        self._pending: list[str] = []
        self.jobs: list[tuple[str, str, int]] = []  # (job id, prompt, tokens), checked after the run
        self.unsettled = 0

    def _running_job(self, prompt: str, tokens: int, now: float) -> Job:
        """The job as dispatch leaves it once the agent took attempt 1."""
        return Job(
            id=new_job_id(now),
            owner="bench",
            status=JobStatus.RUNNING,
            status_reason="handed_to_agent",
            model=MODEL,
            prompt=prompt,
            options={"num_predict": tokens},
            max_queue_s=3600.0,
            timeout_s=600.0,
            attempt=1,
            queued_at=now,
            lease_expires_at=now + 3600.0,
        )

    def prepare(self, prompts: Sequence[str], tokens: int) -> list[bytes]:
        settings, out = self._stack.settings, []
        self._pending = []
        for prompt in prompts:
            job, _ = self._store.create(self._running_job(prompt, tokens, time.time()), None)
            spec = AgentJob.model_validate(
                {
                    "job_id": job.id,
                    "attempt": 1,
                    "model": MODEL,
                    "prompt": prompt,
                    "options": job.options,
                    "timeout_s": job.timeout_s,
                    "report_url": f"{self._stack.url}/v1/jobs/{job.id}/events",
                    "reports_url": f"{self._stack.url}/v1/reports",
                    "report_token": job_token(settings.job_token_secret, job.id, 1),
                }
            )
            body = spec.model_dump_json().encode()
            out.append(build_request(HOST, self.port, self.path, body, self._signer.sign("POST", self.path, body)))
            self._pending.append(job.id)
            self.jobs.append((job.id, prompt, tokens))
        return out

    async def settle(self) -> None:
        """Wait until the control plane has every job of the burst terminal (its final report applied)."""
        deadline = time.monotonic() + 30.0
        while self._pending and time.monotonic() < deadline:
            self._pending = [j for j in self._pending if not self._terminal(j)]
            if self._pending:
                await asyncio.sleep(0.01)
        self.unsettled += len(self._pending)

    def _terminal(self, job_id: str) -> bool:
        job = self._store.get(job_id)
        return job is not None and job.status.is_terminal()

    def control_plane_cpu_s(self) -> float:
        return tree_cpu_s(self._functions_pid)

    def check_jobs(self) -> dict[str, int]:
        """Every job succeeded, and the chunks the control plane stored are exactly the stand-in's text."""
        succeeded = exact = 0
        for job_id, prompt, tokens in self.jobs:
            job = self._store.get(job_id)
            if job is None or job.status is not JobStatus.SUCCEEDED:
                continue
            succeeded += 1
            stored = "".join(c.text for c in self._store.read_chunks(job_id, 1))
            exact += stored == fake_completion_text(MODEL, prompt, tokens)
        return {
            "jobs": len(self.jobs),
            "succeeded": succeeded,
            "stored_text_exact": exact,
            "unsettled_after_30s": self.unsettled,
        }


class PyWorkerRoute(Route):
    name = "pyworker"

    def __init__(self, port: int, proxy: Proc, signature: str, scaler_url: str) -> None:
        super().__init__(port, proxy)
        self._signature = signature
        self._reqnum = 0
        self.scaler_url = scaler_url

    def prepare(self, prompts: Sequence[str], tokens: int) -> list[bytes]:
        out = []
        for prompt in prompts:
            self._reqnum += 1  # PyWorker keys its in-flight requests by reqnum: unique per request
            auth = {
                "cost": "100",
                "endpoint": "bench",
                "reqnum": self._reqnum,
                "request_idx": self._reqnum,
                "signature": self._signature,
                "url": f"http://{HOST}:{self.port}",
            }
            body = json.dumps({"auth_data": auth, "payload": ollama_body(prompt, tokens)}).encode()
            out.append(build_request(HOST, self.port, self.path, body))
        return out
