"""Agent streaming overhead: Ollama direct vs. gpuq's agent vs. Vast's PyWorker, same stand-in, same run.

    .venv/bin/python -m bench.agent_stream [--rounds 12] [--streams 1,8,32] [--tokens 200] [--max-s 480]

Every server is its own process, so each proxy's CPU is read from ``/proc/<pid>/stat``:

- **direct**: the Ollama stand-in (``python -m shared.fakes.ollama``), ``POST /api/generate`` streaming,
  5 ms per token, 200-token streams (``options.num_predict``);
- **gpuq**: the agent (``python -m agent``, production settings except ``MAX_CONCURRENT_JOBS=64``) at
  ``POST /v1/stream``, each request signed with ``RequestSigner``. Progress reports and chunk storage
  are on and go to the real control plane: the four functions in their functions-framework process
  (``DevStack``), writing the real SQLite store. Each job is put in the store as dispatch leaves it
  (running, attempt 1), so the agent's per-attempt report token is accepted and its reports are applied;
  after the run every job must be ``succeeded`` with its exact text stored;
- **pyworker**: Vast's PyWorker (``vastai`` 1.9.1) in its own venv, configured by
  ``bench/pyworker_worker.py``, reporting to ``bench/fake_autoscaler.py``; ``UNSECURED=true`` unless
  ``--pyworker-auth`` (then every request carries a real RSA signature it verifies).

Phases, interleaved round-robin over the paths (the first path rotates every round):

1. latency: per round ``--singles`` streams one at a time, then 8, then 32 streams started together;
2. throughput: token delay 0 (set live on the stand-in), bursts of 1 and 32 streams;
3. CPU per request: 1-token streams, 8 at a time.

The client (``bench/ndjson_client.py``) pre-builds every request (signature included) before the clock
starts and stamps each line when it arrives; every stream's text is checked against the stand-in's
deterministic output afterwards. Results: table on stdout, ``bench/results/agent_stream.json``.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import os
import resource
import secrets
import shutil
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import httpx

from bench.ndjson_client import StreamResult, build_request, stream
from bench.procs import Proc, children, find_child, spawn, tree_cpu_s
from bench.profiling import Profiler, print_profiles
from bench.report import (
    RESULTS_DIR,
    Target,
    fmt,
    int_list,
    markdown_table,
    percentile,
    ratio,
    targets_table,
    write_results,
)
from shared.fakes.ollama import fake_completion_text
from shared.jobs.events import AgentJob
from shared.models import Job, new_job_id
from shared.security.signing import RequestSigner, job_token
from shared.states import JobStatus
from shared.store.sqlite import SqliteJobStore
from shared.tools.devstack import DevStack, DevStackConfig, free_port

__all__ = ["main"]

REPO = Path(__file__).resolve().parents[1]
VASTAI_PYTHON = REPO / ".venv" / "vastai" / "bin" / "python"
MODEL = "llama3.2:1b"
HOST = "127.0.0.1"
SETTLE_S = 0.05  # after every burst, for every path: the proxy finishes its post-response work
STREAM_TIMEOUT_S = 60.0
PYWORKER_READY_LINE = "Healthcheck confirmed - marking model as loaded"


def log(message: str) -> None:
    print(f"[agent_stream {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def ollama_body(prompt: str, tokens: int) -> dict[str, Any]:
    """What each path sends to the model server (the agent builds the same body itself)."""
    return {"model": MODEL, "stream": True, "keep_alive": -1, "prompt": prompt, "options": {"num_predict": tokens}}


# --- the three paths ------------------------------------------------------------------------------
class Route:
    """One way to reach the model: how requests are built, and which process is the proxy."""

    name = "direct"
    path = "/api/generate"

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


class GpuqRoute(Route):
    name = "gpuq"
    path = "/v1/stream"

    def __init__(self, port: int, proxy: Proc, secret: str, stack: DevStack, functions_pid: int) -> None:
        super().__init__(port, proxy)
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


# --- measurements ---------------------------------------------------------------------------------
@dataclass
class Sample:
    """Everything measured for one (phase, concurrency, path)."""

    ttfc_s: list[float] = field(default_factory=list)
    gaps_s: list[float] = field(default_factory=list)
    requests: int = 0
    tokens: int = 0
    wall_s: float = 0.0
    cpu_s: float = 0.0
    control_plane_cpu_s: float = 0.0
    errors: int = 0
    wrong_text: int = 0
    error_examples: list[str] = field(default_factory=list)

    def add(self, results: Sequence[StreamResult], prompts: Sequence[str], tokens: int) -> None:
        for res, prompt in zip(results, prompts, strict=True):
            self.requests += 1
            if not res.ok:
                self.errors += 1
                if len(self.error_examples) < 3:
                    self.error_examples.append(res.error or f"HTTP {res.status}")
                continue
            self.tokens += res.tokens
            if res.ttfc_s is not None:
                self.ttfc_s.append(res.ttfc_s)
            self.gaps_s.extend(res.gaps_s())
            if res.text() != fake_completion_text(MODEL, prompt, tokens):
                self.wrong_text += 1

    def row(self) -> dict[str, Any]:
        ms = 1000.0
        return {
            "requests": self.requests,
            "ttfc_p50_ms": _scale(percentile(self.ttfc_s, 50), ms),
            "ttfc_p99_ms": _scale(percentile(self.ttfc_s, 99), ms),
            "gap_p50_ms": _scale(percentile(self.gaps_s, 50), ms),
            "gap_p99_ms": _scale(percentile(self.gaps_s, 99), ms),
            "gap_mean_ms": _scale(sum(self.gaps_s) / len(self.gaps_s), ms) if self.gaps_s else None,
            "chunks_per_s": self.tokens / self.wall_s if self.wall_s else None,
            "cpu_ms_per_request": self.cpu_s * ms / self.requests if self.requests else None,
            "cpu_ms_per_1k_tokens": self.cpu_s * ms * 1000 / self.tokens if self.tokens else None,
            "control_plane_cpu_ms_per_request": (
                self.control_plane_cpu_s * ms / self.requests if self.requests else None
            ),
            "tokens": self.tokens,
            "wall_s": self.wall_s,
            "cpu_s": self.cpu_s,
            "errors": self.errors,
            "wrong_text": self.wrong_text,
            "error_examples": self.error_examples,
        }


def _scale(value: float | None, factor: float) -> float | None:
    return None if value is None else value * factor


class Bench:
    def __init__(self, routes: list[Route], deadline: float, procs: list[Proc]) -> None:
        self.routes = routes
        self.deadline = deadline
        self.procs = procs
        self.samples: dict[tuple[str, int, str], Sample] = {}
        self.truncated = False
        self._serial = 0

    def sample(self, phase: str, streams: int, route: Route) -> Sample:
        return self.samples.setdefault((phase, streams, route.name), Sample())

    def order(self, round_no: int) -> list[Route]:
        k = round_no % len(self.routes)
        return self.routes[k:] + self.routes[:k]

    def check_alive(self) -> None:
        """A server that died makes every later number meaningless: stop at once, and say which."""
        for proc in self.procs:
            code = proc.popen.poll()
            if code is not None:
                how = f"killed by signal {-code}" if code < 0 else f"exited with {code}"
                raise RuntimeError(
                    f"{proc.name} (pid {proc.pid}) {how} during the benchmark"
                    + (" - by something else on this machine?" if code < 0 else "")
                    + f"; log {proc.log_path}"
                )

    def out_of_time(self) -> bool:
        if time.monotonic() > self.deadline:
            self.truncated = True
        return self.truncated

    async def burst(self, route: Route, n: int, tokens: int, sample: Sample | None) -> None:
        """``n`` streams started together; CPU read around them (and the proxy's follow-up work)."""
        self._serial += 1
        run = uuid.uuid4().hex[:6]
        prompts = [f"bench {route.name} {self._serial}.{i} {run}" for i in range(n)]
        requests = route.prepare(prompts, tokens)
        cpu0, cp0 = route.cpu_s(), route.control_plane_cpu_s()
        t0 = time.perf_counter()
        results = await asyncio.gather(*(stream(HOST, route.port, r, timeout_s=STREAM_TIMEOUT_S) for r in requests))
        wall = time.perf_counter() - t0
        await route.settle()
        await asyncio.sleep(SETTLE_S)
        self.check_alive()
        if sample is None:
            return
        sample.wall_s += wall
        sample.cpu_s += route.cpu_s() - cpu0
        sample.control_plane_cpu_s += route.control_plane_cpu_s() - cp0
        sample.add(results, prompts, tokens)


async def _set_token_delay(ollama_url: str, delay_s: float) -> None:
    async with httpx.AsyncClient() as client:
        (await client.post(ollama_url + "/__fake__/faults", json={"token_delay_s": delay_s})).raise_for_status()


async def run_phases(
    bench: Bench, args: argparse.Namespace, ollama_url: str, on_measuring: Callable[[], None]
) -> dict[str, float]:
    log("warm-up")
    for route in bench.routes:
        await bench.burst(route, 4, 8, None)
        await bench.burst(route, 1, args.tokens, None)

    idle: dict[str, float] = {}
    cpu0 = {r.name: r.cpu_s() for r in bench.routes}
    await asyncio.sleep(args.idle_s)
    for r in bench.routes:
        idle[r.name] = (r.cpu_s() - cpu0[r.name]) * 1000 / args.idle_s
    on_measuring()
    if "latency" in args.phases:
        await latency_phase(bench, args)
    await _set_token_delay(ollama_url, 0.0)
    try:
        if "throughput" in args.phases:
            await throughput_phase(bench, args)
        if "cpu" in args.phases:
            await cpu_phase(bench, args)
    finally:
        await _set_token_delay(ollama_url, args.token_delay_ms / 1000)
    return idle


async def latency_phase(bench: Bench, args: argparse.Namespace) -> None:
    log(
        f"latency: {args.rounds} rounds, {args.token_delay_ms:g} ms/token, {args.tokens} tokens, streams {args.streams}"
    )
    for round_no in range(args.rounds):
        if bench.out_of_time():
            break
        for n in args.streams:
            for route in bench.order(round_no):
                sample = bench.sample("latency", n, route)
                for _ in range(args.singles if n == 1 else 1):
                    await bench.burst(route, n, args.tokens, sample)
        log(f"  round {round_no + 1}/{args.rounds} done")


async def throughput_phase(bench: Bench, args: argparse.Namespace) -> None:
    log(f"throughput: token delay 0, {args.throughput_rounds} rounds, streams {args.throughput_streams}")
    for round_no in range(args.throughput_rounds):
        if bench.out_of_time():
            break
        for n in args.throughput_streams:
            for route in bench.order(round_no):
                for _ in range(args.singles if n == 1 else 1):
                    await bench.burst(route, n, args.tokens, bench.sample("throughput", n, route))


async def cpu_phase(bench: Bench, args: argparse.Namespace) -> None:
    log(f"CPU per request: {args.cpu_requests} one-token streams per path, {args.cpu_concurrency} at a time")
    blocks = max(1, args.cpu_requests // (args.cpu_concurrency * 5))
    per_block = max(1, args.cpu_requests // (blocks * args.cpu_concurrency))
    for block in range(blocks):
        if bench.out_of_time():
            break
        for route in bench.order(block):
            for _ in range(per_block):
                await bench.burst(route, args.cpu_concurrency, 1, bench.sample("cpu", args.cpu_concurrency, route))


# --- set-up ---------------------------------------------------------------------------------------
def _functions_pid() -> int:
    """The functions-framework process DevStack started (a child of this process)."""
    pid = find_child(os.getpid(), b"functions_framework")
    if pid is None:
        raise RuntimeError("the functions process of the dev stack was not found")
    return pid


def _renice_control_plane() -> None:
    """The control plane runs elsewhere in production, not on the GPU box: here it only gets spare CPU."""
    me = os.getpid()
    for marker in (b"functions_framework", b"gcloud_tasks_emulator"):
        pid = find_child(me, marker)
        todo = [pid] if pid else []
        while todo:
            current = todo.pop()
            os.setpriority(os.PRIO_PROCESS, current, 19)
            todo += children(current)


def _rsa_key_and_signature(url: str) -> tuple[bytes, str]:
    """A real RSA key for PyWorker's /pubkey/, and the signature it verifies when secured."""
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import padding, rsa

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    message = json.dumps({"url": url}, indent=4, sort_keys=True).encode()  # what PyWorker verifies
    return pem, base64.b64encode(key.sign(message, padding.PKCS1v15(), hashes.SHA256())).decode()


def _wait_for_line(proc: Proc, line: str, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while line not in proc.log_text():
        if proc.popen.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(f"{proc.name} never logged {line!r}; log:\n{proc.log_text()[-3000:]}")
        time.sleep(0.1)


def start_pyworker(work: Path, ollama_port: int, ollama_log: Path, secured: bool, procs: list[Proc]) -> PyWorkerRoute:
    if not VASTAI_PYTHON.exists():
        raise RuntimeError(f"{VASTAI_PYTHON} is missing: `make` sets up the vastai venv (pip install vastai==1.9.1)")
    port, http_port, scaler_port = free_port(), free_port(), free_port()
    pem, signature = _rsa_key_and_signature(f"http://{HOST}:{port}")
    (work / "autoscaler.pub.pem").write_bytes(pem)
    scaler = spawn(
        "fake-autoscaler",
        [
            sys.executable,
            "-m",
            "bench.fake_autoscaler",
            "--port",
            str(scaler_port),
            "--pubkey-file",
            str(work / "autoscaler.pub.pem"),
        ],
        work / "logs" / "fake-autoscaler.log",
        cwd=REPO,
    )
    procs.append(scaler)
    scaler.wait_http(f"http://{HOST}:{scaler_port}/__state")
    (work / "pyworker").mkdir(exist_ok=True)  # PyWorker writes .has_benchmark into its working folder
    env = {
        "WORKER_PORT": str(port),
        "WORKER_HTTP_PORT": str(http_port),
        "REPORT_ADDR": f"http://{HOST}:{scaler_port}",
        "UNSECURED": "false" if secured else "true",
        "MASTER_TOKEN": "bench",
        "CONTAINER_ID": "1",
        "PUBLIC_IPADDR": HOST,
        f"VAST_TCP_PORT_{port}": str(port),
        "USE_SSL": "false",
        "BENCH_MODEL_PORT": str(ollama_port),
        "BENCH_MODEL_LOG": str(ollama_log),
        "BENCH_MODEL": MODEL,
    }
    worker = spawn(
        "pyworker",
        [str(VASTAI_PYTHON), str(REPO / "bench" / "pyworker_worker.py")],
        work / "logs" / "pyworker.log",
        env=env,
        cwd=work / "pyworker",
    )
    procs.append(worker)
    _wait_for_line(worker, PYWORKER_READY_LINE, 60.0)
    return PyWorkerRoute(port, worker, signature, f"http://{HOST}:{scaler_port}")


def start_agent(
    work: Path,
    secret: str,
    ollama_url: str,
    procs: list[Proc],
    agent_path: Path | None = None,
    extra_env: dict[str, str] | None = None,
) -> tuple[Proc, int]:
    port = free_port()
    env = {
        "GPUQ_AGENT_SECRET": secret,
        "GPUQ_AGENT_HOST": HOST,
        "GPUQ_AGENT_PORT": str(port),
        "GPUQ_AGENT_INSTANCE_ID": "bench-agent",
        "GPUQ_AGENT_PROVIDER": "none",
        "GPUQ_AGENT_OLLAMA_URL": ollama_url,
        "GPUQ_AGENT_PRELOAD_MODELS": MODEL,
        "GPUQ_AGENT_IDLE_GRACE_S": "86400",
        "GPUQ_AGENT_MAX_CONCURRENT_JOBS": "64",
        **(extra_env or {}),
    }
    if agent_path is not None:  # a proposed change, measured before it lands (`-m` puts the cwd first on sys.path)
        env["PYTHONPATH"] = os.pathsep.join([str(agent_path), str(REPO), os.environ.get("PYTHONPATH", "")])
    agent = spawn(
        "agent", [sys.executable, "-m", "agent"], work / "logs" / "agent.log", env=env, cwd=agent_path or REPO
    )
    procs.append(agent)
    agent.wait_http(f"http://{HOST}:{port}/health", ok=300)  # 200 once the model is loaded
    if agent_path is not None:
        log(f"agent runs from {agent_path}")
    return agent, port


# --- report ---------------------------------------------------------------------------------------
def build_rows(bench: Bench, phase: str) -> list[dict[str, Any]]:
    rows = []
    for (ph, streams, name), sample in bench.samples.items():
        if ph != phase:
            continue
        rows.append({"streams": streams, "path": name, **sample.row()})
    rows.sort(key=lambda r: (r["streams"], [r_.name for r_ in bench.routes].index(r["path"])))
    for row in rows:
        direct = next((r for r in rows if r["streams"] == row["streams"] and r["path"] == "direct"), None)
        base = direct or {}
        row["ttfc_added_p50_ms"] = (
            None
            if row["ttfc_p50_ms"] is None or base.get("ttfc_p50_ms") is None
            else row["ttfc_p50_ms"] - base["ttfc_p50_ms"]
        )
        row["ttfc_p50_x_direct"] = ratio(row["ttfc_p50_ms"], base.get("ttfc_p50_ms"))
        row["ttfc_p99_x_direct"] = ratio(row["ttfc_p99_ms"], base.get("ttfc_p99_ms"))
        row["chunks_per_s_x_direct"] = ratio(row["chunks_per_s"], base.get("chunks_per_s"))
    return rows


def _find(rows: list[dict[str, Any]], streams: int, path: str) -> dict[str, Any]:
    return next((r for r in rows if r["streams"] == streams and r["path"] == path), {})


def build_targets(
    latency: list[dict[str, Any]], throughput: list[dict[str, Any]], cpu: list[dict[str, Any]], args: argparse.Namespace
) -> list[Target]:
    big = max(args.streams)
    g1, g32 = _find(latency, 1, "gpuq"), _find(latency, big, "gpuq")
    gcpu = next((r for r in cpu if r["path"] == "gpuq"), {})
    targets = [
        Target("agent: added time to first chunk, 1 stream (p50 - direct p50)", g1.get("ttfc_added_p50_ms"), 1.0, "ms"),
        Target(f"agent: time to first chunk p50, {big} streams together", g32.get("ttfc_p50_ms"), 15.0, "ms"),
        Target(f"agent: time to first chunk p99, {big} streams together", g32.get("ttfc_p99_ms"), 35.0, "ms"),
        Target(f"agent: CPU per 1,000 tokens, {big} streams", g32.get("cpu_ms_per_1k_tokens"), 25.0, "ms"),
        Target("agent: CPU per request (1-token streams)", gcpu.get("cpu_ms_per_request"), 0.5, "ms"),
    ]
    if not any(r["path"] == "pyworker" for r in latency):
        return targets

    def versus(label: str, rows: list[dict[str, Any]], streams: int | None, key: str, higher: bool = False) -> None:
        def pick(path: str) -> dict[str, Any]:
            if streams is None:
                return next((r for r in rows if r["path"] == path), {})
            return _find(rows, streams, path)

        value = ratio(pick("gpuq").get(key), pick("pyworker").get(key))
        targets.append(
            Target(
                f"better than PyWorker: {label} (gpuq ÷ PyWorker)",
                value,
                1.0,
                "x",
                higher_is_better=higher,
                strict=True,
            )
        )

    for n in args.streams:
        versus(f"TTFC p50, {n} stream(s)", latency, n, "ttfc_p50_ms")
        versus(f"TTFC p99, {n} stream(s)", latency, n, "ttfc_p99_ms")
        versus(f"chunk gap p99, {n} stream(s)", latency, n, "gap_p99_ms")
        versus(f"CPU per 1,000 tokens, {n} stream(s)", latency, n, "cpu_ms_per_1k_tokens")
    for n in args.throughput_streams:
        versus(f"chunks/s at 0 ms/token, {n} stream(s)", throughput, n, "chunks_per_s", higher=True)
        versus(f"CPU per 1,000 tokens at 0 ms/token, {n} stream(s)", throughput, n, "cpu_ms_per_1k_tokens")
    versus("CPU per request", cpu, None, "cpu_ms_per_request")
    return targets


def print_report(
    latency: list[dict[str, Any]],
    throughput: list[dict[str, Any]],
    cpu: list[dict[str, Any]],
    idle: dict[str, float],
    targets: list[Target],
    args: argparse.Namespace,
) -> None:
    print(f"\n## Agent streaming overhead ({args.token_delay_ms:g} ms/token, {args.tokens}-token streams)\n")
    print(
        markdown_table(
            [
                "streams",
                "path",
                "n",
                "TTFC p50 ms",
                "TTFC p99 ms",
                "added p50 ms",
                "p50 x direct",
                "p99 x direct",
                "gap p50 ms",
                "gap p99 ms",
                "chunks/s",
                "proxy CPU ms/req",
                "proxy CPU ms/1k tok",
                "errors",
            ],
            [
                [
                    str(r["streams"]),
                    r["path"],
                    str(r["requests"]),
                    fmt(r["ttfc_p50_ms"]),
                    fmt(r["ttfc_p99_ms"]),
                    fmt(r["ttfc_added_p50_ms"]),
                    fmt(r["ttfc_p50_x_direct"]),
                    fmt(r["ttfc_p99_x_direct"]),
                    fmt(r["gap_p50_ms"]),
                    fmt(r["gap_p99_ms"]),
                    fmt(r["chunks_per_s"], 0),
                    fmt(r["cpu_ms_per_request"]) if r["path"] != "direct" else "-",
                    fmt(r["cpu_ms_per_1k_tokens"]) if r["path"] != "direct" else "-",
                    str(r["errors"] + r["wrong_text"]),
                ]
                for r in latency
            ],
        )
    )
    print(f"\n## Throughput (0 ms/token, {args.tokens}-token streams)\n")
    print(
        markdown_table(
            ["streams", "path", "n", "chunks/s", "x direct", "TTFC p50 ms", "proxy CPU ms/1k tok", "errors"],
            [
                [
                    str(r["streams"]),
                    r["path"],
                    str(r["requests"]),
                    fmt(r["chunks_per_s"], 0),
                    fmt(r["chunks_per_s_x_direct"]),
                    fmt(r["ttfc_p50_ms"]),
                    fmt(r["cpu_ms_per_1k_tokens"]) if r["path"] != "direct" else "-",
                    str(r["errors"] + r["wrong_text"]),
                ]
                for r in throughput
            ],
        )
    )
    print(f"\n## CPU per request (1-token streams, {args.cpu_concurrency} at a time)\n")
    print(
        markdown_table(
            ["path", "n", "proxy CPU ms/req", "control plane CPU ms/req", "proxy idle CPU ms/s", "TTFC p50 ms"],
            [
                [
                    r["path"],
                    str(r["requests"]),
                    fmt(r["cpu_ms_per_request"]) if r["path"] != "direct" else "-",
                    fmt(r["control_plane_cpu_ms_per_request"]) if r["path"] == "gpuq" else "-",
                    fmt(idle.get(r["path"])) if r["path"] != "direct" else "-",
                    fmt(r["ttfc_p50_ms"]),
                ]
                for r in cpu
            ],
        )
    )
    print("\n## Targets\n")
    print(targets_table(targets))


# --- main -----------------------------------------------------------------------------------------
def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="bench.agent_stream", description=__doc__.split("\n")[0])
    p.add_argument("--rounds", type=int, default=12, help="latency rounds (each path: singles, 8, 32 streams)")
    p.add_argument("--streams", type=int_list, default=[1, 8, 32], help="concurrency levels of the latency phase")
    p.add_argument("--singles", type=int, default=3, help="one-at-a-time streams per path per round")
    p.add_argument("--tokens", type=int, default=200, help="tokens per stream")
    p.add_argument("--token-delay-ms", type=float, default=5.0)
    p.add_argument("--throughput-rounds", type=int, default=4)
    p.add_argument("--throughput-streams", type=int_list, default=[1, 32])
    p.add_argument("--cpu-requests", type=int, default=320, help="one-token requests per path (CPU per request)")
    p.add_argument("--cpu-concurrency", type=int, default=8)
    p.add_argument("--idle-s", type=float, default=2.0, help="quiet window measuring each proxy's idle CPU")
    p.add_argument("--no-pyworker", action="store_true", help="skip Vast's PyWorker (no vastai venv)")
    p.add_argument(
        "--pyworker-auth",
        action="store_true",
        help="run PyWorker secured (UNSECURED=false): it verifies an RSA signature per request",
    )
    p.add_argument(
        "--phases",
        type=lambda t: [x.strip() for x in t.split(",")],
        default=["latency", "throughput", "cpu"],
        help="which phases to run",
    )
    p.add_argument(
        "--profile",
        type=Path,
        default=None,
        metavar="DIR",
        help="record py-spy profiles of the agent, PyWorker and the functions worker into DIR "
        "(perturbs the numbers: for finding causes only)",
    )
    p.add_argument("--profile-gil", action="store_true", help="profile only the thread holding the GIL (CPU)")
    p.add_argument(
        "--nice-control-plane",
        action="store_true",
        help="renice the functions and emulator processes to 19: the control plane then takes only "
        "spare CPU, as if it ran elsewhere (its work and CPU are still measured)",
    )
    p.add_argument(
        "--agent-path",
        type=Path,
        default=None,
        metavar="DIR",
        help="put DIR first on the agent's PYTHONPATH: measure a proposed agent (or dependency) change",
    )
    p.add_argument(
        "--agent-env",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="extra agent setting, e.g. GPUQ_AGENT_REPORT_INTERVAL_S=1 (to try a setting)",
    )
    p.add_argument("--max-s", type=float, default=480.0, help="stop starting new rounds after this long")
    p.add_argument("--results-dir", type=Path, default=RESULTS_DIR)
    p.add_argument("--keep-logs", action="store_true", help="keep the work folder (logs of every process)")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    for name in [n for n in os.environ if n.startswith("GPUQ_")]:
        del os.environ[name]  # the developer's shell must not configure what we measure
    started = time.monotonic()
    work = Path(tempfile.mkdtemp(prefix="gpuq-bench-agent-"))
    procs: list[Proc] = []
    stack: DevStack | None = None
    ok = False
    try:
        ollama_port = free_port()
        ollama_url = f"http://{HOST}:{ollama_port}"
        ollama_log = work / "logs" / "fake-ollama.log"
        ollama = spawn(
            "fake-ollama",
            [
                sys.executable,
                "-m",
                "shared.fakes.ollama",
                "--host",
                HOST,
                "--port",
                str(ollama_port),
                "--token-delay-ms",
                str(args.token_delay_ms),
                "--load-delay-ms",
                "50",
                "--default-num-tokens",
                str(args.tokens),
            ],
            ollama_log,
            cwd=REPO,
        )
        procs.append(ollama)
        ollama.wait_http(ollama_url + "/")
        log("starting the control plane (emulator + functions) and the agent")
        stack = DevStack(
            DevStackConfig(
                port=free_port(),
                data_dir=work / "stack",
                ollama_url=ollama_url,
                reaper_period_s=3600.0,
                idle_grace_s=3600.0,
            )
        ).start()
        if args.nice_control_plane:
            _renice_control_plane()
        secret = secrets.token_urlsafe(32)  # what the control plane and this agent share (GPUQ_AGENT_SECRET)
        agent_env = dict(item.split("=", 1) for item in args.agent_env)
        agent, agent_port = start_agent(work, secret, ollama_url, procs, args.agent_path, agent_env)
        functions_pid = _functions_pid()
        routes: list[Route] = [Route(ollama_port), GpuqRoute(agent_port, agent, secret, stack, functions_pid)]
        if not args.no_pyworker:
            log("starting PyWorker (vastai 1.9.1) and its fake autoscaler")
            routes.append(start_pyworker(work, ollama_port, ollama_log, args.pyworker_auth, procs))
        bench = Bench(routes, deadline=started + args.max_s, procs=procs)
        profiler = Profiler(args.profile, gil_only=args.profile_gil) if args.profile else None

        def on_measuring() -> None:
            if profiler is not None:
                for route in routes:
                    if route.proxy is not None:
                        profiler.attach(route.name, route.proxy.pid)
                for n, worker in enumerate(children(functions_pid) or [functions_pid], start=1):
                    profiler.attach(f"functions-worker-{n}", worker)  # gunicorn serves from its workers

        usage0 = resource.getrusage(resource.RUSAGE_SELF)
        idle = asyncio.run(run_phases(bench, args, ollama_url, on_measuring))
        usage1 = resource.getrusage(resource.RUSAGE_SELF)
        profiles = profiler.stop() if profiler is not None else {}
        print_profiles(profiles)

        latency, throughput = build_rows(bench, "latency"), build_rows(bench, "throughput")
        cpu = build_rows(bench, "cpu")
        gpuq = next(r for r in routes if isinstance(r, GpuqRoute))
        checks: dict[str, Any] = {
            "gpuq_jobs": gpuq.check_jobs(),
            "client_cpu_s": (usage1.ru_utime + usage1.ru_stime) - (usage0.ru_utime + usage0.ru_stime),
        }
        pyworker = next((r for r in routes if isinstance(r, PyWorkerRoute)), None)
        if pyworker is not None:
            checks["pyworker_autoscaler"] = httpx.get(pyworker.scaler_url + "/__state").json()
        targets = build_targets(latency, throughput, cpu, args)
        print_report(latency, throughput, cpu, idle, targets, args)
        jobs = checks["gpuq_jobs"]
        print(
            f"\ngpuq jobs: {jobs['succeeded']}/{jobs['jobs']} succeeded, {jobs['stored_text_exact']} with the exact "
            f"text stored by the control plane; client CPU {checks['client_cpu_s']:.1f}s"
            + (" (truncated by --max-s)" if bench.truncated else "")
        )
        settings = {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()}
        path = write_results(
            args.results_dir,
            "agent_stream",
            {
                "settings": settings,
                "setup": {
                    "control_plane": "real functions process (DevStack: functions-framework + SQLite store + "
                    "Cloud Tasks emulator); jobs created in the store as dispatch leaves them (running, attempt 1)",
                    "agent": "python -m agent, production settings, GPUQ_AGENT_MAX_CONCURRENT_JOBS=64",
                    "control_plane_niced": args.nice_control_plane,
                    "pyworker": None if pyworker is None else {"vastai": "1.9.1", "unsecured": not args.pyworker_auth},
                    "client": "bench/ndjson_client.py: one connection per request, requests pre-built and pre-signed",
                },
                "latency": latency,
                "throughput": throughput,
                "cpu_per_request": cpu,
                "idle_cpu_ms_per_s": idle,
                "targets": [t.as_dict() for t in targets],
                "checks": checks,
                "profiles": profiles,
                "truncated": bench.truncated,
                "duration_s": time.monotonic() - started,
                "samples": {
                    f"{ph}/{n}/{name}": asdict(s) | {"ttfc_s": None, "gaps_s": None}
                    for (ph, n, name), s in bench.samples.items()
                },
            },
        )
        print(f"\nresults: {path}")
        ok = True
        return 0
    finally:
        for proc in reversed(procs):
            proc.stop()
        if stack is not None:
            stack.stop()
        if ok and not args.keep_logs:
            shutil.rmtree(work, ignore_errors=True)
        else:
            log(f"logs kept in {work}")


if __name__ == "__main__":
    raise SystemExit(main())
