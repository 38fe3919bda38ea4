"""What events cost per job: store reads and writes, queue pushes and functions CPU, events on vs off.

    .venv/bin/python -m bench.events_cost [--jobs 200] [--reports 8] [--rounds 3] [--webhook]

Jobs go through the real core in this process, as in ``tests/contract/test_store_costs.py``: submit,
dispatch onto a pool of two boxes (a stand-in agent on 127.0.0.1 accepts every job), ``--reports``
progress reports of one chunk each, the final report. Every call to the store (SQLite, a fresh file per
run) is counted, and turned into Firestore reads and writes with the same cost model as that test.
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
import json
import logging
import os
import statistics
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from tempfile import TemporaryDirectory
from typing import Any

from aiohttp import web

from bench.report import RESULTS_DIR, fmt, machine, markdown_table, write_results
from shared.boxes.pools import PoolConfig, Pools
from shared.clock import FakeClock
from shared.controlplane import ControlPlane
from shared.fakes.serving import serve_in_thread, start_site
from shared.jobs.dispatcher import dispatch_job
from shared.jobs.events import Report, ReportChunk
from shared.jobs.intake import parse_job_create, submit_job
from shared.jobs.reports import apply_report
from shared.models import Instance, InstanceState, JobResult
from shared.observability.logs import JsonFormatter
from shared.security.signing import NonceCache, job_token
from shared.settings import ControlPlaneSettings
from shared.store.base import JobStore
from shared.store.sqlite import SqliteJobStore

__all__ = ["CountingStore", "main", "run_jobs"]

MODEL = "llama3.2:1b"
POOL = PoolConfig(name="gpu", models=[MODEL], max_boxes=2, jobs_per_box=2, cold_start_s=1.0)
# Firestore (reads, writes) of one call, as shared/store/firestore.py makes them (tests/contract/test_store_costs.py).
FIRESTORE_COST = {
    "create": (1, 2),
    "get": (1, 0),
    "modify": (1, 1),
    "get_record": (1, 0),
    "put_record": (0, 1),
    "modify_record": (1, 0),  # plus one write for each call that wrote (counted apart)
    "append_event": (0, 1),
}


class CountingStore:
    """A JobStore that counts each call (each chunk, each listed document, each record write) and passes it on."""

    def __init__(self, inner: JobStore) -> None:
        self.inner = inner
        self.calls: Counter[str] = Counter()

    def __getattr__(self, name: str) -> Callable[..., Any]:
        target = getattr(self.inner, name)

        def counted(*args: Any, **kwargs: Any) -> Any:
            if name == "append_chunks":
                args = (args[0], list(args[1]), *args[2:])
                self.calls["chunks"] += len(args[1])
            result = target(*args, **kwargs)
            self.calls[name] += 1
            if name in ("list_by_status", "list_records"):
                self.calls["listed_docs"] += len(result)
            if name == "modify_record" and result[1]:
                self.calls["record_writes"] += 1
            return result

        return counted

    def reads_writes(self) -> tuple[int, int]:
        reads = sum(FIRESTORE_COST[m][0] * n for m, n in self.calls.items() if m in FIRESTORE_COST)
        writes = sum(FIRESTORE_COST[m][1] * n for m, n in self.calls.items() if m in FIRESTORE_COST)
        return reads + self.calls["listed_docs"], writes + self.calls["chunks"] + self.calls["record_writes"]


class FixedBoxes:
    """Two boxes that are up, both served by the stand-in agent."""

    name = "local"

    def __init__(self, agent_url: str) -> None:
        self.agent_url = agent_url

    def _box(self, box_id: str) -> Instance:
        return Instance(id=box_id, provider="local", state=InstanceState.RUNNING, agent_url=self.agent_url)

    async def get(self, instance_id: str) -> Instance | None:
        return self._box(instance_id)

    async def start(self, instance_id: str) -> Instance:
        return self._box(instance_id)

    async def stop(self, instance_id: str) -> Instance:
        return self._box(instance_id).model_copy(update={"state": InstanceState.STOPPED})

    async def list(self) -> list[Instance]:
        return [self._box(b) for b in POOL.box_ids()]


class CountingQueue:
    def __init__(self) -> None:
        self.pushes = 0

    def push(self, queue: str, payload: dict[str, Any], *, delay_s: float = 0.0) -> str:
        self.pushes += 1
        return "task"


@contextmanager
def stand_in_agent() -> Iterator[str]:
    async def accept(request: web.Request) -> web.Response:
        body = json.loads(await request.read())
        return web.json_response({"job_id": body["job_id"], "attempt": body["attempt"]}, status=202)

    app = web.Application()
    app.router.add_post("/v1/jobs", accept)

    async def start() -> tuple[web.AppRunner, int]:
        return await start_site(app, "127.0.0.1", 0)

    async def close(served: tuple[web.AppRunner, int]) -> None:
        await served[0].cleanup()

    with serve_in_thread(start, close, name="bench-agent") as (_, port):
        yield f"http://127.0.0.1:{port}"


def _one_job(cp: ControlPlane, prompt: str, reports: int) -> None:
    job, _ = submit_job(cp, "bench", parse_job_create({"model": MODEL, "prompt": prompt}))
    dispatch_job(cp, job.id, 0)
    current = cp.store.get(job.id)
    assert current is not None
    if current.status.value != "running":  # the pool's first job waits one snooze for its box
        assert dispatch_job(cp, job.id, current.dispatch_seq) == "handed_over"
        current = cp.store.get(job.id)
        assert current is not None
    token = job_token(cp.settings.job_token_secret, job.id, current.attempt)
    for seq in range(reports):
        chunk = ReportChunk(seq=seq, text="tok ")
        apply_report(cp, job.id, token, Report(attempt=current.attempt, started=seq == 0, chunks=[chunk]))
    result = JobResult(eval_count=reports, eval_duration_ns=10**9)
    ack = apply_report(cp, job.id, token, Report(attempt=current.attempt, outcome="succeeded", result=result))
    assert ack.status.value == "succeeded"


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
    _one_job(cp, "warm up: imports, connections", reports)  # not measured
    store.calls.clear()
    queue.pushes = 0
    cpu0 = time.thread_time()
    for i in range(jobs):
        _one_job(cp, f"how much do events cost? {i}", reports)
    cpu = time.thread_time() - cpu0
    reads, writes = store.reads_writes()
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
