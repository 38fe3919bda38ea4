"""What events cost per job: store reads and writes, queue pushes and functions CPU, events on vs off.

    .venv/bin/python -m bench.events_cost [--jobs 200] [--reports 8] [--rounds 3] [--webhook]

Jobs go through the real core in this process (``bench/store_calls.py``, as in
``tests/contract/test_store_costs.py``): submit, dispatch onto a pool of two boxes (a stand-in agent on
127.0.0.1 accepts every job), ``--reports`` progress reports of one chunk each, the final report. Every
call to the store (SQLite, a fresh file per run) is counted and turned into Firestore reads and writes.
CPU is ``time.thread_time()`` of the thread running the control plane (the stand-in agent has its own
thread). Each round runs the same jobs with ``GPUQ_EVENTS_ENABLED`` true, then false; the ratios are
on/off within the round, and the medians of the rounds are printed. Log lines (every event's, in both
modes) are formatted as JSON into /dev/null, as production formats them. ``--webhook`` configures an
event webhook too (one more queue push per event it selects; the deliveries themselves run on dispatch
and are not in these numbers).

Results: table on stdout, ``bench/results/events_cost.json``.
"""

from __future__ import annotations

import argparse
import logging
import os
import statistics
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from tempfile import TemporaryDirectory
from typing import Any

from bench.report import RESULTS_DIR, fmt, machine, markdown_table, write_results
from bench.store_calls import POOL, CountingQueue, CountingStore, FixedBoxes, drive_job, stand_in_agent
from shared.boxes.pools import Pools
from shared.clock import FakeClock
from shared.controlplane import ControlPlane
from shared.observability.logs import JsonFormatter
from shared.security.signing import NonceCache
from shared.settings import ControlPlaneSettings
from shared.store.sqlite import SqliteJobStore

__all__ = ["main", "run_jobs"]


def run_jobs(work: Path, agent_url: str, *, jobs: int, reports: int, events: bool, webhook: bool) -> dict[str, Any]:
    """One run on a fresh store file: per-job store reads/writes (Firestore model), pushes, CPU ms, events kept."""
    settings = ControlPlaneSettings(
        job_token_secret="s" * 32,
        agent_master_secret="m" * 32,
        events_enabled=events,
        event_webhook_url="https://hooks.example/gpuq" if webhook else "",
    )
    store = CountingStore(SqliteJobStore(work / f"events-{events}-{time.monotonic_ns()}.db"))
    queue = CountingQueue()
    cp = ControlPlane(
        settings=settings,
        store=store,
        queue=queue,  # type: ignore[arg-type]
        provider=FixedBoxes(agent_url),
        nonces=NonceCache(),
        pools=Pools((POOL,)),
        clock=FakeClock(time.time()),
    )
    drive_job(cp, "warm up: imports, connections", reports)  # not measured
    store.clear()
    queue.pushes = 0
    cpu0 = time.thread_time()
    for i in range(jobs):
        drive_job(cp, f"how much do events cost? {i}", reports)
    cpu = time.thread_time() - cpu0
    reads, writes = store.firestore_reads_writes()
    kept = store.inner.list_events(after=None, limit=500)
    cp.http.close()
    store.inner.close()
    return {
        "events": events,
        "reads_per_job": reads / jobs,
        "writes_per_job": writes / jobs,
        "pushes_per_job": queue.pushes / jobs,
        "cpu_ms_per_job": cpu * 1000 / jobs,
        "event_types_kept": sorted({e["type"] for e in kept.events}),
    }


@contextmanager
def json_logs_to_devnull() -> Iterator[None]:
    """Every log line formatted as production formats it (JSON), written nowhere."""
    root = logging.getLogger()
    handler = logging.FileHandler(os.devnull)
    handler.setFormatter(JsonFormatter("functions"))
    level = root.level
    root.addHandler(handler)
    root.setLevel(logging.INFO)
    logging.getLogger("httpx").setLevel(logging.WARNING)
    try:
        yield
    finally:
        root.removeHandler(handler)
        root.setLevel(level)
        handler.close()


def _table(rounds: list[dict[str, Any]]) -> tuple[str, dict[str, Any]]:
    rows, summary = [], {}
    for key, label in (
        ("reads_per_job", "store reads / job (Firestore model)"),
        ("writes_per_job", "store writes / job (Firestore model)"),
        ("pushes_per_job", "queue pushes / job"),
        ("cpu_ms_per_job", "functions CPU ms / job"),
    ):
        on = statistics.median(r["on"][key] for r in rounds)
        off = statistics.median(r["off"][key] for r in rounds)
        ratio = statistics.median(r["on"][key] / r["off"][key] if r["off"][key] else 0.0 for r in rounds)
        summary[key] = {"on": on, "off": off, "ratio_on_off": ratio}
        rows.append([label, fmt(on), fmt(off), fmt(ratio, 3) + "x"])
    return markdown_table(["per job", "events on", "events off", "on / off"], rows), summary


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--jobs", type=int, default=200)
    parser.add_argument("--reports", type=int, default=8, help="progress reports per job (one chunk each)")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--webhook", action="store_true", help="configure an event webhook (its queue pushes)")
    parser.add_argument("--results-dir", type=Path, default=RESULTS_DIR)
    args = parser.parse_args(argv)
    started = time.monotonic()
    rounds = []
    with TemporaryDirectory() as tmp, stand_in_agent() as agent_url, json_logs_to_devnull():
        for _ in range(args.rounds):
            run = {"jobs": args.jobs, "reports": args.reports, "webhook": args.webhook}
            on = run_jobs(Path(tmp), agent_url, events=True, **run)
            off = run_jobs(Path(tmp), agent_url, events=False, **run)
            rounds.append({"on": on, "off": off})
    table, summary = _table(rounds)
    print(table)
    print(f"\nevent types kept per job scenario: {', '.join(rounds[0]['on']['event_types_kept'])}")
    payload = {
        "benchmark": "events_cost",
        "machine": machine(),
        "settings": vars(args) | {"results_dir": str(args.results_dir)},
        "summary": summary,
        "rounds": rounds,
        "duration_s": round(time.monotonic() - started, 1),
    }
    write_results(args.results_dir, "events_cost", payload)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
