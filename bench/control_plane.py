"""Control plane: durable enqueues/s, warm enqueue -> first token, agent ready -> first waiting job running.

    .venv/bin/python -m bench.control_plane [--enqueue-requests 1000] [--concurrency 1,4,16,64] [--cycles 5]

Everything runs on the local stack (``DevStack``: Cloud Tasks emulator, the four functions in one
functions-framework process with DevStack's two gunicorn workers, the local provider's agent process,
the Ollama stand-in at 5 ms/token):

1. **store alone**: ``SqliteJobStore.create`` in this process on a fresh file, 1 and 4 threads;
2. **warm enqueue -> first token**: after one cold start (not counted), jobs one at a time through the
   public API: ``POST /v1/jobs``, then ``GET /v1/jobs/{id}/stream`` until the first ``output`` event
   (``JobsClient``, what users run). The model's own time to first token (the stand-in, direct) is
   measured in the same run and subtracted; the agent's and functions' logs give a breakdown;
3. **agent ready -> first waiting job running**, with the ready announcement: the box is stopped, a job
   is submitted, dispatch starts the box and snoozes the task for ``--snooze-s`` (production default 2 s);
   measured from the agent's ``ready`` log line to its ``job ... accepted`` line (the hand-over that
   marks the job running);
4. **durable enqueues/s**: ``POST /v1/jobs`` at each concurrency over keep-alive connections, the job
   queue paused (dispatching is another function's work: tasks accumulate in the emulator); afterwards
   every accepted job must be in the store and have its task in the queue. Before the first level, 200
   untimed enqueues over 16 connections make sure every worker has served once (a worker's first
   enqueue builds its control plane and imports ``google.cloud.tasks``). CPU per accepted job is
   read for each process on the 2 cores: the functions (gunicorn's arbiter and workers), the emulator,
   and this client. The client shares those cores, so it is kept cheap: each request is a prepared
   header plus its body, and of each answer it reads only the status, ``Content-Length`` and
   ``Connection: close``. Every answer is still read whole and every non-202 counted as an error;
5. the same as 3 **without** the announcement, on a second stack whose agents cannot reach ``/trigger``
   (a pass-through proxy refuses it), so only the snoozed task starts the job.

Results: tables on stdout, ``bench/results/control_plane.json``.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import os
import random
import shutil
import statistics
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web

from bench.ndjson_client import build_request, stream
from bench.procs import children, find_child, tree_cpu_s
from bench.profiling import Profiler, print_profiles
from bench.report import RESULTS_DIR, Target, fmt, int_list, markdown_table, percentile, targets_table, write_results
from shared.models import InstanceState, Job, new_job_id
from shared.states import JobStatus
from shared.store.queue import TaskQueue
from shared.store.sqlite import SqliteJobStore
from shared.tools.client import JobsClient
from shared.tools.devstack import DevStack, DevStackConfig, free_port

__all__ = ["main"]

MODEL = "llama3.2:1b"
HOST = "127.0.0.1"
INSTANCE = "local-1"
SHORT = {"num_predict": 8}  # warm and cycle jobs: short generations, the stand-in's first token is what counts
# Jobs one after the other would phase-lock onto the emulator's 100 ms dispatch loop and the SSE stream's 50 ms
# store poll, and every job would see the same wait (38 ms in one run, 103 ms in the next). A random pause
# before each submission samples both loops' phase evenly: the spread is part of what is measured.
JITTER_S = 0.2
WARMUP_ENQUEUES = 200


def log(message: str) -> None:
    print(f"[control_plane {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def _ms(values: list[float]) -> dict[str, float | None]:
    return {
        "p50_ms": _x1000(percentile(values, 50)),
        "p99_ms": _x1000(percentile(values, 99)),
        "max_ms": _x1000(max(values) if values else None),
        "n": len(values),
    }


def _x1000(value: float | None) -> float | None:
    return None if value is None else value * 1000


# --- 1. the store alone ---------------------------------------------------------------------------
def bench_store(work: Path, jobs: int, threads: int) -> dict[str, Any]:
    store = SqliteJobStore(work / f"store-{threads}.db")
    now = time.time()
    todo = [
        Job(
            id=new_job_id(now),
            owner="bench",
            model=MODEL,
            prompt=f"store {i}",
            max_queue_s=3600.0,
            timeout_s=600.0,
            queued_at=now,
        )
        for i in range(jobs)
    ]
    latencies: list[float] = []
    lock = threading.Lock()

    def run(chunk: list[Job]) -> None:
        mine = []
        for job in chunk:
            t0 = time.perf_counter()
            store.create(job, None)
            mine.append(time.perf_counter() - t0)
        with lock:
            latencies.extend(mine)

    t0, cpu0 = time.perf_counter(), time.process_time()
    with ThreadPoolExecutor(threads) as pool:
        list(pool.map(run, [todo[i::threads] for i in range(threads)]))
    wall, cpu = time.perf_counter() - t0, time.process_time() - cpu0
    store.close()
    return {
        "threads": threads,
        "jobs": jobs,
        "creates_per_s": jobs / wall,
        "cpu_ms_per_create": cpu * 1000 / jobs,
        **_ms(latencies),
    }


BENCH_QUEUE = "gpuq-bench"  # a queue of our own, paused for good: its tasks are never dispatched


def bench_queue(stack: DevStack, pushes: int) -> dict[str, Any]:
    """``TaskQueue.push`` alone, one at a time, to a paused queue: this process's and the emulator's CPU."""
    from google.cloud.tasks_v2 import Queue

    queue = TaskQueue(stack.settings)
    s = stack.settings
    queue.client.create_queue(
        parent=f"projects/{s.tasks_project}/locations/{s.tasks_location}",
        queue=Queue(name=queue.queue_path(BENCH_QUEUE)),
    )
    queue.pause(BENCH_QUEUE)
    emulator = find_child(os.getpid(), b"gcloud_tasks_emulator")
    queue.push(BENCH_QUEUE, {"kind": "bench"})  # connect outside the clock
    latencies = []
    cpu0, emu0 = time.process_time(), tree_cpu_s(emulator) if emulator else 0.0
    t0 = time.perf_counter()
    for i in range(pushes):
        t1 = time.perf_counter()
        queue.push(BENCH_QUEUE, {"kind": "job", "job_id": f"job_{i}", "seq": 0})
        latencies.append(time.perf_counter() - t1)
    wall = time.perf_counter() - t0
    cpu, emu = time.process_time() - cpu0, (tree_cpu_s(emulator) if emulator else 0.0) - emu0
    return {
        "pushes": pushes,
        "pushes_per_s": pushes / wall,
        "client_cpu_ms_per_push": cpu * 1000 / pushes,
        "emulator_cpu_ms_per_push": emu * 1000 / pushes,
        **_ms(latencies),
    }


# --- 2. warm enqueue -> first token ---------------------------------------------------------------
def _log_times(path: Path, offset: int = 0) -> list[tuple[float, str]]:
    """(epoch seconds, message) of each line of a gpuq log (``%(asctime)s`` is local time, ms)."""
    out: list[tuple[float, str]] = []
    try:
        with open(path, "rb") as f:
            f.seek(offset)
            text = f.read().decode(errors="replace")
    except OSError:
        return out
    for line in text.splitlines():
        try:
            stamp = datetime.strptime(line[:23], "%Y-%m-%d %H:%M:%S,%f").timestamp()
        except ValueError:
            continue
        out.append((stamp, line[24:]))
    return out


def _first(lines: list[tuple[float, str]], needle: str) -> float | None:
    return next((t for t, message in lines if needle in message), None)


def _iso_epoch(value: str | None) -> float | None:
    return None if value is None else datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()


def model_ttft(stack: DevStack, n: int) -> list[float]:
    """The stand-in's own time to first token (direct, the same short generation the jobs ask for)."""
    host, port = stack.ollama_url.removeprefix("http://").rsplit(":", 1)

    async def run() -> list[float]:
        out = []
        for i in range(n):
            body = json.dumps(
                {"model": MODEL, "prompt": f"direct {i}", "stream": True, "keep_alive": -1, "options": SHORT}
            ).encode()
            res = await stream(host, int(port), build_request(host, int(port), "/api/generate", body))
            if res.ok and res.ttfc_s is not None:
                out.append(res.ttfc_s)
        return out

    return asyncio.run(run())


def bench_warm_first_token(stack: DevStack, client: JobsClient, n: int, rng: random.Random) -> dict[str, Any]:
    log("cold start (not counted)")
    t0 = time.time()
    first = client.submit({"model": MODEL, "prompt": f"cold {uuid.uuid4()}", "options": SHORT})
    cold = client.wait(first["id"], timeout_s=120, poll_s=0.05)
    if cold["status"] != "succeeded":
        raise RuntimeError(f"cold-start job ended {cold['status']}: {cold.get('error')}")
    cold_s = time.time() - t0
    log(f"warm enqueue -> first token: {n} jobs one at a time")
    agent_log = stack.log_dir / f"agent-{INSTANCE}.log"
    totals, enqueue, to_agent, agent_to_started, started_to_client = [], [], [], [], []
    failures = 0
    for i in range(n):
        time.sleep(rng.uniform(0.0, JITTER_S))
        t_submit = time.time()
        job = client.submit({"model": MODEL, "prompt": f"warm {i} {uuid.uuid4()}", "options": SHORT})
        t_accepted_api = time.time()
        t_first = None
        for event in client.stream(job["id"]):
            if event.event == "output" and t_first is None:
                t_first = time.time()
            if event.event == "done":
                break
        if t_first is None:
            failures += 1
            continue
        totals.append(t_first - t_submit)
        enqueue.append(t_accepted_api - t_submit)
        accepted = _first(_log_times(agent_log), f"job {job['id']} attempt 1 accepted")
        started = _iso_epoch(client.get(job["id"]).get("started_at"))
        if accepted is not None and started is not None:
            to_agent.append(accepted - t_submit)
            agent_to_started.append(started - accepted)
            started_to_client.append(t_first - started)
    model = model_ttft(stack, max(5, n // 2))
    model_p50 = percentile(model, 50) or 0.0
    overhead = [t - model_p50 for t in totals]
    return {
        "jobs": n,
        "failures": failures,
        "cold_start_enqueue_to_done_s": cold_s,
        "enqueue_to_first_token": _ms(totals),
        "model_ttft": _ms(model),
        "overhead": _ms(overhead) | {"mean_ms": _x1000(statistics.fmean(overhead)) if overhead else None},
        "overhead_samples_ms": [round(x * 1000, 2) for x in overhead],
        "breakdown_p50_ms": {
            "POST /v1/jobs (202)": _x1000(percentile(enqueue, 50)),
            "submit -> agent accepted (queue + dispatch + hand-over)": _x1000(percentile(to_agent, 50)),
            "agent accepted -> 'started' report applied": _x1000(percentile(agent_to_started, 50)),
            "started -> first output at the client (token, report, SSE poll)": _x1000(
                percentile(started_to_client, 50)
            ),
        },
    }


# --- 3 and 5. agent ready -> first waiting job running ----------------------------------------------
def _box_running(stack: DevStack) -> bool:
    return stack.provider().get_sync(INSTANCE).state is not InstanceState.STOPPED


def bench_ready_to_running(
    stack: DevStack, client: JobsClient, cycles: int, label: str, rng: random.Random
) -> dict[str, Any]:
    log(f"agent ready -> job running, {label}: {cycles} cold starts")
    agent_log = stack.log_dir / f"agent-{INSTANCE}.log"
    samples, boots, failures, announced = [], [], 0, 0
    for _ in range(cycles):
        if _box_running(stack):
            stack.provider().stop_sync(INSTANCE)
        offset = agent_log.stat().st_size if agent_log.exists() else 0
        time.sleep(rng.uniform(0.0, JITTER_S))
        t_submit = time.time()
        job = client.submit({"model": MODEL, "prompt": f"cycle {uuid.uuid4()}", "options": SHORT})
        done = client.wait(job["id"], timeout_s=60, poll_s=0.05)
        lines = _log_times(agent_log, offset)
        ready = _first(lines, "ready: models")
        accepted = _first(lines, f"job {job['id']} attempt 1 accepted")
        if done["status"] != "succeeded" or ready is None or accepted is None:
            failures += 1
            continue
        samples.append(accepted - ready)
        boots.append(ready - t_submit)
        announced += _first(lines, "announced ready") is not None
    return {
        "variant": label,
        "cycles": cycles,
        "failures": failures,
        "announced": announced,
        "ready_to_running": _ms(samples),
        "mean_ms": _x1000(statistics.fmean(samples)) if samples else None,
        "submit_to_ready_p50_ms": _x1000(percentile(boots, 50)),
    }


class NoAnnounceProxy:
    """Passes every call through to the functions, except the agent's ready announcement (``/trigger``)."""

    def __init__(self, target: str) -> None:
        self.target = target
        self.port = free_port()
        self.url = f"http://{HOST}:{self.port}"
        self.refused = 0
        self._session: aiohttp.ClientSession | None = None

    async def _forward(self, request: web.Request) -> web.Response:
        if request.path.startswith("/trigger"):
            self.refused += 1
            return web.json_response({"error": {"code": "bench", "message": "announcement refused"}}, status=503)
        headers = {
            k: v
            for k, v in request.headers.items()
            if k.lower() not in ("host", "content-length", "transfer-encoding", "connection")
        }
        assert self._session is not None
        async with self._session.request(
            request.method, self.target + request.path_qs, data=await request.read(), headers=headers
        ) as upstream:
            return web.Response(body=await upstream.read(), status=upstream.status, content_type=upstream.content_type)

    @contextmanager
    def running(self) -> Iterator[None]:
        loop = asyncio.new_event_loop()
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._forward)
        runner = web.AppRunner(app, access_log=None)

        async def start() -> None:
            self._session = aiohttp.ClientSession()
            await runner.setup()
            await web.TCPSite(runner, HOST, self.port).start()

        async def stop() -> None:
            await runner.cleanup()
            if self._session is not None:
                await self._session.close()

        thread = threading.Thread(target=loop.run_forever, daemon=True, name="no-announce-proxy")
        thread.start()
        try:
            asyncio.run_coroutine_threadsafe(start(), loop).result(30)
            yield
        finally:
            asyncio.run_coroutine_threadsafe(stop(), loop).result(30)
            loop.call_soon_threadsafe(loop.stop)
            thread.join(30)
            loop.close()


# --- 4. durable enqueues/s --------------------------------------------------------------------------
async def _enqueue_level(
    port: int, api_key: str, requests: int, concurrency: int, tag: str
) -> tuple[list[float], int, float]:
    counter = itertools.count()
    latencies: list[float] = []
    errors = 0
    head = (
        f"POST /v1/jobs HTTP/1.1\r\nHost: {HOST}:{port}\r\nAuthorization: Bearer {api_key}\r\n"
        f"Content-Type: application/json\r\nContent-Length: "
    ).encode()
    body_format = json.dumps({"model": MODEL, "prompt": f"enqueue {tag} %d"}).encode()  # tag: hex, JSON-safe

    async def worker() -> None:
        nonlocal errors
        reader, writer = await asyncio.open_connection(HOST, port)
        try:
            while (i := next(counter)) < requests:
                body = body_format % i
                t0 = time.perf_counter()
                writer.write(b"%s%d\r\n\r\n%s" % (head, len(body), body))
                try:
                    raw = await reader.readuntil(b"\r\n\r\n")
                    status, length, close = _response_head(raw)
                    await reader.readexactly(length)
                except (asyncio.IncompleteReadError, ConnectionError, ValueError):
                    errors += 1
                    writer.close()
                    reader, writer = await asyncio.open_connection(HOST, port)
                    continue
                latencies.append(time.perf_counter() - t0)
                if status != 202:
                    errors += 1
                if close:
                    writer.close()
                    reader, writer = await asyncio.open_connection(HOST, port)
        finally:
            writer.close()

    t0 = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return latencies, errors, time.perf_counter() - t0


def _response_head(raw: bytes) -> tuple[int, int, bool]:
    """(status, Content-Length, Connection: close) of an HTTP/1.1 response head; ValueError if malformed."""
    status = int(raw[9:12])
    length, close = 0, False
    for line in raw.lower().split(b"\r\n")[1:]:
        if line.startswith(b"content-length:"):
            length = int(line[15:])
        elif line.startswith(b"connection:"):
            close = line[11:].strip() == b"close"
    return status, length, close


def bench_enqueue(
    stack: DevStack, requests: int, levels: list[int], deadline: float, profile_dir: Path | None
) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    queue = TaskQueue(stack.settings)
    store = SqliteJobStore(stack.settings.sqlite_path())
    if _box_running(stack):
        stack.provider().stop_sync(INSTANCE)
    queue.pause(stack.settings.job_queue)
    functions = find_child(os.getpid(), b"functions_framework")
    emulator = find_child(os.getpid(), b"gcloud_tasks_emulator")
    # Untimed: each gunicorn worker builds its control plane and imports google.cloud.tasks on its first
    # enqueue (~0.25 s of CPU), and the phases before may have reached only one of them. Over 16
    # connections both take part here, so the levels measure warm workers, as with one worker before.
    asyncio.run(_enqueue_level(stack.config.port, stack.api_key, WARMUP_ENQUEUES, 16, "warmup"))
    profiler = Profiler(profile_dir, gil_only=True) if profile_dir is not None else None
    if profiler is not None:
        if functions is not None:
            for n, worker in enumerate(children(functions) or [functions], start=1):
                profiler.attach(f"functions-worker-{n}", worker)
        if emulator is not None:
            profiler.attach("tasks-emulator", emulator)
    rows = []
    for level in levels:
        if time.monotonic() > deadline:
            break
        before_jobs = len(store.list_by_status([JobStatus.QUEUED], limit=10**7))
        before_tasks = queue.count_tasks(stack.settings.job_queue)
        n = requests if level > 1 else max(50, requests // 3)
        log(f"enqueue: {n} jobs at concurrency {level}")
        cpu0 = {
            name: tree_cpu_s(pid) if pid else 0.0 for name, pid in (("functions", functions), ("emulator", emulator))
        }
        client0 = time.process_time()
        latencies, errors, wall = asyncio.run(
            _enqueue_level(stack.config.port, stack.api_key, n, level, uuid.uuid4().hex[:6])
        )
        client_cpu_s = time.process_time() - client0
        accepted = len(latencies) - errors
        cpu = {
            name: (tree_cpu_s(pid) - cpu0[name]) * 1000 / max(1, accepted) if pid else None
            for name, pid in (("functions", functions), ("emulator", emulator))
        }
        cpu["client"] = client_cpu_s * 1000 / max(1, accepted)
        stored = len(store.list_by_status([JobStatus.QUEUED], limit=10**7)) - before_jobs
        tasks = queue.count_tasks(stack.settings.job_queue) - before_tasks
        rows.append(
            {
                "concurrency": level,
                "requests": n,
                "accepted": accepted,
                "errors": errors,
                "enqueues_per_s": accepted / wall,
                "stored_jobs": stored,
                "queued_tasks": tasks,
                "durable": stored == accepted and tasks == accepted,
                "functions_cpu_ms_per_enqueue": cpu["functions"],
                "emulator_cpu_ms_per_enqueue": cpu["emulator"],
                "client_cpu_ms_per_enqueue": cpu["client"],
                "functions_workers": len(children(functions)) if functions else None,
                **_ms(latencies),
            }
        )
    store.close()
    return rows, (profiler.stop() if profiler is not None else {})


# --- report -----------------------------------------------------------------------------------------
def build_targets(enqueue: list[dict[str, Any]], warm: dict[str, Any], ready: dict[str, Any]) -> list[Target]:
    within = [r for r in enqueue if r["p99_ms"] is not None and r["p99_ms"] <= 50.0 and r["durable"]]
    best = max(within, key=lambda r: r["enqueues_per_s"], default=None)
    peak = max(enqueue, key=lambda r: r["enqueues_per_s"], default=None)
    note = "" if best is None else f"at concurrency {best['concurrency']}, p99 {best['p99_ms']:.0f} ms"
    if best is None and peak is not None:
        note = f"no level had p99 ≤ 50 ms; peak {peak['enqueues_per_s']:.0f}/s at p99 {peak['p99_ms']:.0f} ms"
    return [
        Target(
            "durable enqueues/s with p99 ≤ 50 ms (best of the concurrency levels)",
            best["enqueues_per_s"] if best else 0.0,
            1000.0,
            "/s",
            higher_is_better=True,
            note=note,
        ),
        Target(
            "warm enqueue -> first token, overhead beyond the model (p50)",
            warm["overhead"]["p50_ms"],
            150.0,
            "ms",
            note=f"p99 {fmt(warm['overhead']['p99_ms'], 0)} ms",
        ),
        Target(
            "agent ready -> first waiting job running (worst of the cycles)",
            ready["ready_to_running"]["max_ms"],
            1000.0,
            "ms",
            note=f"p50 {fmt(ready['ready_to_running']['p50_ms'], 0)} ms",
        ),
    ]


def print_report(
    store: list[dict[str, Any]],
    queue: dict[str, Any],
    enqueue: list[dict[str, Any]],
    warm: dict[str, Any],
    ready: list[dict[str, Any]],
    targets: list[Target],
) -> None:
    print("\n## Durable enqueues through the jobs API (job queue paused; store + task per job)\n")
    print(
        markdown_table(
            [
                "concurrency",
                "jobs",
                "enqueues/s",
                "p50 ms",
                "p99 ms",
                "max ms",
                "functions CPU ms/job",
                "emulator CPU ms/job",
                "client CPU ms/job",
                "errors",
                "stored & queued",
            ],
            [
                [
                    str(r["concurrency"]),
                    str(r["requests"]),
                    fmt(r["enqueues_per_s"], 0),
                    fmt(r["p50_ms"]),
                    fmt(r["p99_ms"]),
                    fmt(r["max_ms"]),
                    fmt(r["functions_cpu_ms_per_enqueue"]),
                    fmt(r["emulator_cpu_ms_per_enqueue"]),
                    fmt(r["client_cpu_ms_per_enqueue"]),
                    str(r["errors"]),
                    "yes" if r["durable"] else "**NO**",
                ]
                for r in enqueue
            ],
        )
    )
    if enqueue:
        print(
            f"\nfunctions: {enqueue[0]['functions_workers']} gunicorn worker(s). All three processes share "
            f"{os.cpu_count()} cores: CPU ms/job summed over them bounds enqueues/s at 1000 * cores / that sum."
        )
    print("\n## Its parts alone: the store (SqliteJobStore.create) and the queue (TaskQueue.push), in process\n")
    print(
        markdown_table(
            ["part", "calls", "calls/s", "p50 ms", "p99 ms", "caller CPU ms/call", "emulator CPU ms/call"],
            [
                *[
                    [
                        f"store, {r['threads']} thread(s)",
                        str(r["jobs"]),
                        fmt(r["creates_per_s"], 0),
                        fmt(r["p50_ms"], 3),
                        fmt(r["p99_ms"], 3),
                        fmt(r["cpu_ms_per_create"], 3),
                        "-",
                    ]
                    for r in store
                ],
                [
                    "queue, 1 thread (emulator)",
                    str(queue["pushes"]),
                    fmt(queue["pushes_per_s"], 0),
                    fmt(queue["p50_ms"], 3),
                    fmt(queue["p99_ms"], 3),
                    fmt(queue["client_cpu_ms_per_push"], 3),
                    fmt(queue["emulator_cpu_ms_per_push"], 3),
                ],
            ],
        )
    )
    print("\n## Warm box: enqueue -> first token (public API, SSE)\n")
    e2e, model, over = warm["enqueue_to_first_token"], warm["model_ttft"], warm["overhead"]
    print(
        markdown_table(
            ["measure", "p50 ms", "p99 ms", "n"],
            [
                ["enqueue -> first output event", fmt(e2e["p50_ms"]), fmt(e2e["p99_ms"]), str(e2e["n"])],
                [
                    "model's own time to first token (direct)",
                    fmt(model["p50_ms"]),
                    fmt(model["p99_ms"]),
                    str(model["n"]),
                ],
                ["overhead beyond the model", fmt(over["p50_ms"]), fmt(over["p99_ms"]), str(over["n"])],
                ["  (its mean)", fmt(over["mean_ms"]), "", ""],
                *[[f"  {k}", fmt(v), "", ""] for k, v in warm["breakdown_p50_ms"].items()],
            ],
        )
    )
    print("\n## Agent ready -> first waiting job running (agent log: 'ready' -> 'accepted')\n")
    print(
        markdown_table(
            ["variant", "cycles", "p50 ms", "mean ms", "max ms", "submit -> ready p50 ms", "failures"],
            [
                [
                    r["variant"],
                    str(r["cycles"]),
                    fmt(r["ready_to_running"]["p50_ms"], 0),
                    fmt(r["mean_ms"], 0),
                    fmt(r["ready_to_running"]["max_ms"], 0),
                    fmt(r["submit_to_ready_p50_ms"], 0),
                    str(r["failures"]),
                ]
                for r in ready
            ],
        )
    )
    print("\n## Targets\n")
    print(targets_table(targets))


# --- main -------------------------------------------------------------------------------------------
def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="bench.control_plane", description=__doc__.split("\n")[0])
    p.add_argument("--store-jobs", type=int, default=2000, help="creates per thread count (store alone)")
    p.add_argument("--queue-pushes", type=int, default=500, help="TaskQueue.push calls (queue alone)")
    p.add_argument("--enqueue-requests", type=int, default=1000, help="jobs per concurrency level")
    p.add_argument("--concurrency", type=int_list, default=[1, 4, 16, 64])
    p.add_argument("--warm-jobs", type=int, default=40)
    p.add_argument("--seed", type=int, default=0, help="seed of the random pauses between submissions")
    p.add_argument("--cycles", type=int, default=5, help="cold starts per ready -> running variant")
    p.add_argument("--snooze-s", type=float, default=2.0, help="dispatch snooze while the box boots (GPUQ_SNOOZE_S)")
    p.add_argument("--token-delay-ms", type=float, default=5.0)
    p.add_argument(
        "--profile",
        type=Path,
        default=None,
        metavar="DIR",
        help="py-spy profiles of the functions worker and the emulator during the enqueue phase",
    )
    p.add_argument(
        "--functions-env",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="extra environment of the functions process, e.g. WORKERS=2 (to try a setting)",
    )
    p.add_argument("--max-s", type=float, default=300.0, help="skip remaining enqueue levels after this long")
    p.add_argument("--results-dir", type=Path, default=RESULTS_DIR)
    p.add_argument("--keep-logs", action="store_true")
    return p.parse_args(argv)


def _stack(
    work: Path, name: str, args: argparse.Namespace, port: int | None = None, extra_env: dict[str, str] | None = None
) -> DevStack:
    env = dict(item.split("=", 1) for item in args.functions_env) | (extra_env or {})
    config = DevStackConfig(
        port=port or free_port(),
        data_dir=work / name,
        token_delay_s=args.token_delay_ms / 1000,
        load_delay_s=0.2,
        idle_grace_s=600.0,
        reaper_period_s=3600.0,
        snooze_s=args.snooze_s,
        extra_env=env,
    )
    return DevStack(config)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    for name in [n for n in os.environ if n.startswith("GPUQ_")]:
        del os.environ[name]
    started = time.monotonic()
    rng = random.Random(args.seed)
    work = Path(tempfile.mkdtemp(prefix="gpuq-bench-cp-"))
    ok = False
    try:
        log(f"store alone: {args.store_jobs} creates")
        store = [bench_store(work, args.store_jobs, threads) for threads in (1, 4)]

        log("stack with the ready announcement")
        with _stack(work, "stack", args) as stack:
            client = JobsClient(stack.url, stack.api_key)
            warm = bench_warm_first_token(stack, client, args.warm_jobs, rng)
            ready = [bench_ready_to_running(stack, client, args.cycles, "with ready announcement", rng)]
            log(f"queue alone: {args.queue_pushes} pushes")
            queue_alone = bench_queue(stack, args.queue_pushes)
            enqueue, profiles = bench_enqueue(
                stack, args.enqueue_requests, args.concurrency, started + args.max_s, args.profile
            )
            client.close()

        log("stack whose agents cannot announce themselves")
        port = free_port()
        proxy = NoAnnounceProxy(f"http://{HOST}:{port}")
        with (
            proxy.running(),
            _stack(
                work,
                "stack-no-announce",
                args,
                port,
                {"GPUQ_PUBLIC_URL": proxy.url, "GPUQ_DISPATCH_URL": f"http://{HOST}:{port}/dispatch"},
            ) as quiet,
        ):
            client = JobsClient(quiet.url, quiet.api_key)
            ready.append(
                bench_ready_to_running(
                    quiet, client, args.cycles, f"without (snoozed task, snooze_s={args.snooze_s:g})", rng
                )
            )
            ready[-1]["announcements_refused"] = proxy.refused
            client.close()
            if proxy.refused == 0:  # the agents found another way to /trigger: the variant measured nothing
                raise RuntimeError("no ready announcement reached the refusing proxy: 'without' is not measured")

        targets = build_targets(enqueue, warm, ready[0])
        print_report(store, queue_alone, enqueue, warm, ready, targets)
        print_profiles(profiles)
        settings = {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()}
        path = write_results(
            args.results_dir,
            "control_plane",
            {
                "settings": settings,
                "store": store,
                "queue": queue_alone,
                "enqueue": enqueue,
                "warm_first_token": warm,
                "ready_to_running": ready,
                "targets": [t.as_dict() for t in targets],
                "profiles": profiles,
                "duration_s": time.monotonic() - started,
            },
        )
        print(f"\nresults: {path}")
        ok = True
        return 0
    finally:
        if ok and not args.keep_logs:
            shutil.rmtree(work, ignore_errors=True)
        else:
            log(f"logs kept in {work}")


if __name__ == "__main__":
    raise SystemExit(main())
