"""``main``: start every server, run the phases, print the report, write ``agent_stream.json``, stop everything."""

from __future__ import annotations

import argparse
import asyncio
import os
import resource
import secrets
import shutil
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import httpx

from bench.agent_stream.cli import parse_args
from bench.agent_stream.constants import log
from bench.agent_stream.harness import Bench
from bench.agent_stream.phases import run_phases
from bench.agent_stream.pyworker import start_pyworker
from bench.agent_stream.results import build_rows, build_targets
from bench.agent_stream.routes import GpuqRoute, OpenAIRoute, PyWorkerRoute, Route
from bench.agent_stream.servers import (
    functions_pid,
    renice_control_plane,
    start_agent,
    start_control_plane,
    start_ollama,
    start_openai_server,
)
from bench.agent_stream.tables import print_report
from bench.procs import Proc, children
from bench.profiling import Profiler, print_profiles
from bench.report import write_results
from shared.tools.devstack import DevStack

__all__ = ["main"]


@dataclass
class Started:
    """What this run started: its work folder, its processes (in start order) and the control plane."""

    work: Path
    procs: list[Proc] = field(default_factory=list)
    stack: DevStack | None = None

    def stop(self) -> None:
        for proc in reversed(self.procs):
            proc.stop()
        if self.stack is not None:
            self.stack.stop()


@dataclass
class Measured:
    """What the phases left besides the samples: idle CPU per path, profiles, this client's own CPU."""

    idle: dict[str, float]
    profiles: dict[str, Any]
    client_cpu_s: float


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    for name in [n for n in os.environ if n.startswith("GPUQ_")]:
        del os.environ[name]  # the developer's shell must not configure what we measure
    started = time.monotonic()
    run = Started(Path(tempfile.mkdtemp(prefix="gpuq-bench-agent-")))
    ok = False
    try:
        routes, server_urls, functions = start_routes(args, run)
        bench = Bench(routes, deadline=started + args.max_s, procs=run.procs)
        measured = measure(bench, args, server_urls, functions)
        print_profiles(measured.profiles)
        report(bench, args, measured, started)
        ok = True
        return 0
    finally:
        run.stop()
        if ok and not args.keep_logs:
            shutil.rmtree(run.work, ignore_errors=True)
        else:
            log(f"logs kept in {run.work}")


def start_routes(args: argparse.Namespace, run: Started) -> tuple[list[Route], list[str], int]:
    """Every server, and the routes through them; also the stand-ins' URLs and the functions' pid."""
    ollama_port, ollama_url, ollama_log = start_ollama(run.work, args.token_delay_ms, args.tokens, run.procs)
    urls = [ollama_url]
    log("starting the control plane (emulator + functions) and the agent")
    run.stack = start_control_plane(run.work, ollama_url)
    if args.nice_control_plane:
        renice_control_plane()
    secret = secrets.token_urlsafe(32)  # what the control plane and this agent share (GPUQ_AGENT_SECRET)
    agent_env = dict(item.split("=", 1) for item in args.agent_env)
    routes: list[Route] = []
    if "ollama" in args.backends:
        agent, agent_port = start_agent(run.work, secret, ollama_url, run.procs, args.agent_path, agent_env)
        routes += [Route(ollama_port), GpuqRoute(agent_port, agent, secret, run.stack, functions_pid())]
    if "openai" in args.backends:
        log("starting the OpenAI-compatible stand-in and an agent on the openai backend")
        port, url = start_openai_server(run.work, args.token_delay_ms, args.tokens, run.procs)
        urls.append(url)
        env = agent_env | {"GPUQ_AGENT_BACKEND": "openai", "GPUQ_AGENT_BACKEND_URL": url}
        env |= {"GPUQ_AGENT_INSTANCE_ID": "bench-agent-openai"}
        agent, agent_port = start_agent(run.work, secret, ollama_url, run.procs, args.agent_path, env, "agent-openai")
        gpuq = GpuqRoute(agent_port, agent, secret, run.stack, functions_pid(), backend="openai")
        routes += [OpenAIRoute(port), gpuq]
    if not args.no_pyworker:
        log("starting PyWorker (vastai 1.9.1) and its fake autoscaler")
        routes.append(start_pyworker(run.work, ollama_port, ollama_log, args.pyworker_auth, run.procs))
    return routes, urls, functions_pid()


def measure(bench: Bench, args: argparse.Namespace, server_urls: list[str], functions: int) -> Measured:
    """The phases, profiled if asked (from the end of the idle window), and this process's CPU around them."""
    profiler = Profiler(args.profile, gil_only=args.profile_gil) if args.profile else None

    def on_measuring() -> None:
        if profiler is not None:
            _attach(profiler, bench.routes, functions)

    usage0 = resource.getrusage(resource.RUSAGE_SELF)
    idle = asyncio.run(run_phases(bench, args, server_urls, on_measuring))
    usage1 = resource.getrusage(resource.RUSAGE_SELF)
    profiles = profiler.stop() if profiler is not None else {}
    client_cpu_s = (usage1.ru_utime + usage1.ru_stime) - (usage0.ru_utime + usage0.ru_stime)
    return Measured(idle, profiles, client_cpu_s)


def _attach(profiler: Profiler, routes: list[Route], functions: int) -> None:
    for route in routes:
        if route.proxy is not None:
            profiler.attach(route.name, route.proxy.pid)
    for n, worker in enumerate(children(functions) or [functions], start=1):
        profiler.attach(f"functions-worker-{n}", worker)  # gunicorn serves from its workers


def report(bench: Bench, args: argparse.Namespace, measured: Measured, started: float) -> None:
    """Rows, targets and checks: the tables and the jobs line on stdout, everything in the results file."""
    latency, throughput = build_rows(bench, "latency"), build_rows(bench, "throughput")
    cpu = build_rows(bench, "cpu")
    pyworker = next((r for r in bench.routes if isinstance(r, PyWorkerRoute)), None)
    checks = _checks(bench.routes, pyworker, measured.client_cpu_s)
    targets = build_targets(latency, throughput, cpu, args)
    print_report(latency, throughput, cpu, measured.idle, targets, args)
    for name, jobs in checks["gpuq_jobs"].items():
        print(
            f"\n{name} jobs: {jobs['succeeded']}/{jobs['jobs']} succeeded, {jobs['stored_text_exact']} with the "
            f"exact text stored by the control plane"
        )
    print(f"client CPU {checks['client_cpu_s']:.1f}s" + (" (truncated by --max-s)" if bench.truncated else ""))
    settings = {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()}
    path = write_results(
        args.results_dir,
        "agent_stream",
        {
            "settings": settings,
            "setup": _setup(args, pyworker),
            "latency": latency,
            "throughput": throughput,
            "cpu_per_request": cpu,
            "idle_cpu_ms_per_s": measured.idle,
            "targets": [t.as_dict() for t in targets],
            "checks": checks,
            "profiles": measured.profiles,
            "truncated": bench.truncated,
            "duration_s": time.monotonic() - started,
            "samples": {
                f"{ph}/{n}/{name}": asdict(s) | {"ttfc_s": None, "gaps_s": None}
                for (ph, n, name), s in bench.samples.items()
            },
        },
    )
    print(f"\nresults: {path}")


def _checks(routes: list[Route], pyworker: PyWorkerRoute | None, client_cpu_s: float) -> dict[str, Any]:
    """That every measured path really worked: gpuq's jobs stored exactly, PyWorker's reporting ran."""
    jobs = {r.name: r.check_jobs() for r in routes if isinstance(r, GpuqRoute)}
    checks: dict[str, Any] = {"gpuq_jobs": jobs, "client_cpu_s": client_cpu_s}
    if pyworker is not None:
        checks["pyworker_autoscaler"] = httpx.get(pyworker.scaler_url + "/__state").json()
    return checks


def _setup(args: argparse.Namespace, pyworker: PyWorkerRoute | None) -> dict[str, Any]:
    return {
        "control_plane": "real functions process (DevStack: functions-framework + SQLite store + "
        "Cloud Tasks emulator); jobs created in the store as dispatch leaves them (running, attempt 1)",
        "agent": "python -m agent, production settings, GPUQ_AGENT_MAX_CONCURRENT_JOBS=64; one per backend "
        "(gpuq: ollama in front of the Ollama stand-in; gpuq-openai: openai in front of the OpenAI-compatible one)",
        "control_plane_niced": args.nice_control_plane,
        "pyworker": None if pyworker is None else {"vastai": "1.9.1", "unsecured": not args.pyworker_auth},
        "client": "bench/ndjson_client.py: one connection per request, requests pre-built and pre-signed",
    }
