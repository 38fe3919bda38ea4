"""Fleet benchmark: a burst of jobs on pools of 1, 2 and 4 boxes of the real local stack.

    .venv/bin/python -m bench.fleet [--boxes 1,2,4] [--jobs 24] [--tokens 60] [--jobs-per-box 2]

For each pool size N the whole dev stack starts (functions, Cloud Tasks emulator, Ollama stand-in, local
boxes that are agent processes), a burst of ``--jobs`` jobs is submitted at once, and the run measures:

- **makespan**: first submit to last finish, and its speed-up over the 1-box pool of the same run;
- **ideal**: one cold start (measured: the first box's start request to ready) plus the jobs' own service
  times (started to finished, measured in the same run) spread over the N boxes' slots, and makespan / ideal;
- **wait** p50/p95 (queued to started), what a user of the burst sees;
- **scale-up reaction**: from the whole burst being in (submitted concurrently) to the start request of the
  second box (the scale rule at work: one check a second per pool, the snooze between dispatches).
"""

from __future__ import annotations

import argparse
import tempfile
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx

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
from shared.tools.client import JobsClient
from shared.tools.devstack import DevStack, DevStackConfig, free_port

__all__ = ["main"]

MODEL = "llama3.2:1b"


def _parse(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="bench.fleet", description=(__doc__ or "").split("\n")[0])
    p.add_argument("--boxes", type=int_list, default=[1, 2, 4], help="pool sizes (max_boxes) to run")
    p.add_argument("--jobs", type=int, default=24, help="jobs in the burst")
    p.add_argument("--tokens", type=int, default=60, help="tokens each job generates (num_predict)")
    p.add_argument("--jobs-per-box", type=int, default=2)
    p.add_argument("--token-delay-ms", type=float, default=20.0, help="the stand-in's pace")
    p.add_argument("--max-s", type=float, default=600.0, help="skip remaining pool sizes after this long")
    p.add_argument("--results-dir", type=Path, default=RESULTS_DIR)
    return p.parse_args(argv)


def _watch_starts(stack: DevStack, stop: threading.Event, seen: dict[str, float]) -> None:
    """The first start request of each box, read from GET /v1/instances while the burst runs."""
    with httpx.Client(timeout=10, headers={"Authorization": f"Bearer {stack.api_key}"}) as http:
        while not stop.wait(0.05):
            for box in http.get(stack.url + "/v1/instances").json()["instances"]:
                if box.get("started_at") is not None and box["id"] not in seen:
                    seen[box["id"]] = float(box["started_at"])


def _pools_file(root: Path, boxes: int, jobs_per_box: int) -> Path:
    """The same pool for every size (a 1-box pool too: without a file it would get the default slots)."""
    path = root / f"pools-{boxes}.toml"
    path.write_text(
        f'[pools.local]\nprovider = "local"\nmodels = ["{MODEL}"]\nmax_boxes = {boxes}\n'
        f'jobs_per_box = {jobs_per_box}\nidle_policy = "fixed"\nidle_grace_s = 2.0\ncold_start_s = 2.0\n'
    )
    return path


def _run_pool(args: argparse.Namespace, boxes: int, root: Path) -> dict[str, Any]:
    config = DevStackConfig(
        port=free_port(),
        data_dir=root / f"pool-{boxes}",
        pools_file=_pools_file(root, boxes, args.jobs_per_box),
        token_delay_s=args.token_delay_ms / 1000.0,
        load_delay_s=0.3,
        idle_grace_s=2.0,
        reaper_period_s=1.0,
        snooze_s=0.2,
    )
    with DevStack(config) as stack, JobsClient(stack.url, stack.api_key) as client:
        seen: dict[str, float] = {}
        stop = threading.Event()
        watcher = threading.Thread(target=_watch_starts, args=(stack, stop, seen), daemon=True)
        watcher.start()
        run = uuid.uuid4().hex[:8]
        body = {"model": MODEL, "options": {"num_predict": args.tokens}}
        submitted = time.time()
        with ThreadPoolExecutor(8) as pool:  # the burst arrives at once, as a batch script sends it
            jobs = list(pool.map(lambda i: client.submit({**body, "prompt": f"fleet {run} {i}"}), range(args.jobs)))
        burst_in = time.time()
        done = [client.wait(j["id"], timeout_s=300, poll_s=0.1) for j in jobs]
        stop.set()
        watcher.join()
        first_ready = min(float(b["ready_at"]) for b in client.instances()["instances"] if b.get("ready_at"))
    return _measure(done, seen, (submitted, burst_in), first_ready, boxes, args)


def _epoch(value: Any) -> float:
    from datetime import datetime

    return value if isinstance(value, int | float) else datetime.fromisoformat(str(value)).timestamp()


def _measure(
    done: list[dict[str, Any]],
    seen: dict[str, float],
    burst: tuple[float, float],
    first_ready: float,
    boxes: int,
    args: argparse.Namespace,
) -> dict[str, Any]:
    submitted, burst_in = burst
    failed = [j["id"] for j in done if j["status"] != "succeeded"]
    makespan = max(_epoch(j["finished_at"]) for j in done) - submitted
    waits = [_epoch(j["started_at"]) - _epoch(j["queued_at"]) for j in done if j.get("started_at")]
    services = [_epoch(j["finished_at"]) - _epoch(j["started_at"]) for j in done if j.get("started_at")]
    cold = first_ready - min(seen.values()) if seen else None
    # Work-conserving lower bound: one cold start, then the jobs' own service spread over every slot.
    ideal = (cold or 0.0) + max(sum(services) / (boxes * args.jobs_per_box), max(services, default=0.0))
    starts = sorted(seen.values())
    return {
        "max_boxes": boxes,
        "boxes_used": len({j["instance_id"] for j in done}),
        "failed": failed,
        "makespan_s": makespan,
        "ideal_s": ideal,
        "makespan_x_ideal": ratio(makespan, ideal),
        "wait_p50_s": percentile(waits, 50),
        "wait_p95_s": percentile(waits, 95),
        "cold_start_s": cold,
        "service_p50_s": percentile(services, 50),
        "burst_submitted_ms": (burst_in - submitted) * 1000.0,
        "second_box_after_ms": max(0.0, starts[1] - burst_in) * 1000.0 if len(starts) > 1 else None,
    }


def main(argv: list[str] | None = None) -> int:
    args = _parse(argv)
    started = time.monotonic()
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="gpuq-bench-fleet-") as tmp:
        for boxes in args.boxes:
            if rows and time.monotonic() - started > args.max_s:
                print(f"skipping max_boxes={boxes}: over --max-s")
                continue
            rows.append(_run_pool(args, boxes, Path(tmp)))
    base = rows[0]["makespan_s"] if rows else None
    for row in rows:
        row["speedup_x_1_box"] = ratio(base, row["makespan_s"])
    headers = ["max boxes", "used", "makespan s", "x faster than 1", "ideal s", "makespan/ideal"]
    headers += ["wait p50 s", "wait p95 s", "2nd box after ms"]
    table = [
        [
            str(r["max_boxes"]),
            str(r["boxes_used"]),
            fmt(r["makespan_s"], 1),
            fmt(r["speedup_x_1_box"]),
            fmt(r["ideal_s"], 1),
            fmt(r["makespan_x_ideal"]),
            fmt(r["wait_p50_s"], 1),
            fmt(r["wait_p95_s"], 1),
            fmt(r["second_box_after_ms"], 0),
        ]
        for r in rows
    ]
    print(f"## Burst of {args.jobs} jobs x {args.tokens} tokens, {args.jobs_per_box} per box\n")
    print(markdown_table(headers, table))
    targets = [Target(f"makespan / ideal, {r['max_boxes']} box(es)", r["makespan_x_ideal"], 1.5, "x") for r in rows] + [
        Target(f"second box started after the burst, {r['max_boxes']} boxes", r["second_box_after_ms"], 1500.0, "ms")
        for r in rows
        if r["max_boxes"] > 1
    ]
    print("\n## Targets\n")
    print(targets_table(targets))
    write_results(
        args.results_dir,
        "fleet",
        {
            "settings": vars(args) | {"results_dir": str(args.results_dir)},
            "pools": rows,
            "targets": [t.as_dict() for t in targets],
            "duration_s": time.monotonic() - started,
        },
    )
    return 1 if any(r["failed"] for r in rows) else 0


if __name__ == "__main__":
    raise SystemExit(main())
