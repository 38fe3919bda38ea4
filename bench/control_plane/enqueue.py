"""4. Durable enqueues/s: ``POST /v1/jobs`` at each concurrency, the job queue paused, every job then checked.

The load is raw HTTP/1.1 over keep-alive connections (a prepared head plus the body; of each answer
only the status, ``Content-Length`` and ``Connection: close`` are read), so that this client, on the
same cores, costs little. Around each level: CPU of the functions, the emulator and this process, and
afterwards the jobs stored and the tasks queued.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import os
import time
import uuid
from pathlib import Path
from typing import Any

from bench.control_plane.constants import HOST, MODEL, log
from bench.control_plane.stacks import stop_box
from bench.control_plane.stats import ms_summary
from bench.procs import children, find_child, tree_cpu_s
from bench.profiling import Profiler
from shared.states import JobStatus
from shared.store.queue import TaskQueue
from shared.store.sqlite import SqliteJobStore
from shared.tools.devstack import DevStack

__all__ = ["bench_enqueue"]

WARMUP_ENQUEUES = 200


def bench_enqueue(
    stack: DevStack, requests: int, levels: list[int], deadline: float, profile_dir: Path | None
) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    queue = TaskQueue(stack.settings)
    store = SqliteJobStore(stack.settings.sqlite_path())
    stop_box(stack)
    queue.pause(stack.settings.job_queue)
    functions = find_child(os.getpid(), b"functions_framework")
    emulator = find_child(os.getpid(), b"gcloud_tasks_emulator")
    # Untimed: each gunicorn worker builds its control plane and imports google.cloud.tasks on its first
    # enqueue (~0.25 s of CPU), and the phases before may have reached only one of them. Over 16
    # connections both take part here, so the levels measure warm workers, as with one worker before.
    asyncio.run(_enqueue_level(stack.config.port, stack.api_key, WARMUP_ENQUEUES, 16, "warmup"))
    profiler = _profiler(profile_dir, functions, emulator)
    rows = []
    for level in levels:
        if time.monotonic() > deadline:
            break
        rows.append(_measure_level(stack, store, queue, requests, level, functions, emulator))
    store.close()
    return rows, (profiler.stop() if profiler is not None else {})


def _profiler(profile_dir: Path | None, functions: int | None, emulator: int | None) -> Profiler | None:
    """py-spy on the functions' workers and the emulator, if asked: what the enqueue phase costs, where."""
    profiler = Profiler(profile_dir, gil_only=True) if profile_dir is not None else None
    if profiler is not None:
        if functions is not None:
            for n, worker in enumerate(children(functions) or [functions], start=1):
                profiler.attach(f"functions-worker-{n}", worker)
        if emulator is not None:
            profiler.attach("tasks-emulator", emulator)
    return profiler


def _measure_level(
    stack: DevStack,
    store: SqliteJobStore,
    queue: TaskQueue,
    requests: int,
    level: int,
    functions: int | None,
    emulator: int | None,
) -> dict[str, Any]:
    """One concurrency level: its enqueues, the CPU each process spent per accepted job, and durability."""
    before_jobs = len(store.list_by_status([JobStatus.QUEUED], limit=10**7))
    before_tasks = queue.count_tasks(stack.settings.job_queue)
    n = requests if level > 1 else max(50, requests // 3)
    log(f"enqueue: {n} jobs at concurrency {level}")
    cpu0 = {name: tree_cpu_s(pid) if pid else 0.0 for name, pid in (("functions", functions), ("emulator", emulator))}
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
    return {
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
        **ms_summary(latencies),
    }


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
