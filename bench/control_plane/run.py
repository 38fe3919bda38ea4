"""``main``: the store alone, then the two stacks (with and without the ready announcement), the report, the file."""

from __future__ import annotations

import argparse
import os
import random
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.control_plane.cli import parse_args
from bench.control_plane.constants import HOST, log
from bench.control_plane.enqueue import bench_enqueue
from bench.control_plane.parts import bench_queue, bench_store
from bench.control_plane.proxy import NoAnnounceProxy
from bench.control_plane.ready import bench_ready_to_running
from bench.control_plane.stacks import build_stack
from bench.control_plane.tables import build_targets, print_report
from bench.control_plane.warm import bench_warm_first_token
from bench.profiling import print_profiles
from bench.report import write_results
from shared.tools.client import JobsClient
from shared.tools.devstack import free_port

__all__ = ["main"]


@dataclass
class Announcing:
    """What the stack with the ready announcement measured (phases 2, 3, the queue alone and 4)."""

    warm: dict[str, Any]
    ready: dict[str, Any]
    queue: dict[str, Any]
    enqueue: list[dict[str, Any]]
    profiles: dict[str, Any]


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
        announcing = with_announcement(work, args, rng, started)
        ready = [announcing.ready, without_announcement(work, args, rng)]
        report(args, store, announcing, ready, started)
        ok = True
        return 0
    finally:
        if ok and not args.keep_logs:
            shutil.rmtree(work, ignore_errors=True)
        else:
            log(f"logs kept in {work}")


def with_announcement(work: Path, args: argparse.Namespace, rng: random.Random, started: float) -> Announcing:
    log("stack with the ready announcement")
    with build_stack(work, "stack", args) as stack:
        client = JobsClient(stack.url, stack.api_key)
        warm = bench_warm_first_token(stack, client, args.warm_jobs, rng)
        ready = bench_ready_to_running(stack, client, args.cycles, "with ready announcement", rng)
        log(f"queue alone: {args.queue_pushes} pushes")
        queue_alone = bench_queue(stack, args.queue_pushes)
        enqueue, profiles = bench_enqueue(
            stack, args.enqueue_requests, args.concurrency, started + args.max_s, args.profile
        )
        client.close()
    return Announcing(warm, ready, queue_alone, enqueue, profiles)


def without_announcement(work: Path, args: argparse.Namespace, rng: random.Random) -> dict[str, Any]:
    """Phase 5: agents whose ``/trigger`` calls a proxy refuses, so only the snoozed task starts the job."""
    log("stack whose agents cannot announce themselves")
    port = free_port()
    proxy = NoAnnounceProxy(f"http://{HOST}:{port}")
    with (
        proxy.running(),
        build_stack(
            work,
            "stack-no-announce",
            args,
            port,
            {"GPUQ_PUBLIC_URL": proxy.url, "GPUQ_DISPATCH_URL": f"http://{HOST}:{port}/dispatch"},
        ) as quiet,
    ):
        client = JobsClient(quiet.url, quiet.api_key)
        ready = bench_ready_to_running(
            quiet, client, args.cycles, f"without (snoozed task, snooze_s={args.snooze_s:g})", rng
        )
        ready["announcements_refused"] = proxy.refused
        client.close()
        if proxy.refused == 0:  # the agents found another way to /trigger: the variant measured nothing
            raise RuntimeError("no ready announcement reached the refusing proxy: 'without' is not measured")
    return ready


def report(
    args: argparse.Namespace,
    store: list[dict[str, Any]],
    announcing: Announcing,
    ready: list[dict[str, Any]],
    started: float,
) -> None:
    targets = build_targets(announcing.enqueue, announcing.warm, ready[0])
    print_report(store, announcing.queue, announcing.enqueue, announcing.warm, ready, targets)
    print_profiles(announcing.profiles)
    settings = {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()}
    path = write_results(
        args.results_dir,
        "control_plane",
        {
            "settings": settings,
            "store": store,
            "queue": announcing.queue,
            "enqueue": announcing.enqueue,
            "warm_first_token": announcing.warm,
            "ready_to_running": ready,
            "targets": [t.as_dict() for t in targets],
            "profiles": announcing.profiles,
            "duration_s": time.monotonic() - started,
        },
    )
    print(f"\nresults: {path}")
