"""The enqueue's parts alone, in this process: ``SqliteJobStore.create`` on a fresh file, ``TaskQueue.push``."""

from __future__ import annotations

import os
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from bench.control_plane.constants import MODEL
from bench.control_plane.stats import ms_summary
from bench.procs import find_child, tree_cpu_s
from shared.models import Job, new_job_id
from shared.store.queue import TaskQueue
from shared.store.sqlite import SqliteJobStore
from shared.tools.devstack import DevStack

__all__ = ["bench_queue", "bench_store"]

BENCH_QUEUE = "gpuq-bench"  # a queue of our own, paused for good: its tasks are never dispatched


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
        **ms_summary(latencies),
    }


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
        **ms_summary(latencies),
    }
