"""Counting what one job costs the store: jobs driven through the real core in this process (submit,
dispatch onto a pool of two boxes that are up, progress reports, the final report), every store call
counted and turned into Firestore reads and writes.

Used by ``bench/events_cost.py`` and ``tests/contract/test_store_costs.py``."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from aiohttp import web

from shared.boxes.pools import PoolConfig
from shared.controlplane import ControlPlane
from shared.fakes.serving import serve_app_in_thread
from shared.jobs.dispatcher import dispatch_job
from shared.jobs.events import Report, ReportChunk
from shared.jobs.intake import parse_job_create, submit_job
from shared.jobs.reports import apply_report
from shared.models import Instance, InstanceState, JobResult
from shared.security.signing import job_token
from shared.store.base import JobStore

__all__ = [
    "FIRESTORE_COST",
    "MODEL",
    "POOL",
    "CountingQueue",
    "CountingStore",
    "FixedBoxes",
    "drive_job",
    "stand_in_agent",
]

MODEL = "llama3.2:1b"
POOL = PoolConfig(name="gpu", models=[MODEL], max_boxes=2, jobs_per_box=2, cold_start_s=1.0)
# Firestore (reads, writes) of one store call, as shared/store/firestore.py makes them: a transaction
# reads the document it writes; a query reads every document it returns (counted per document).
FIRESTORE_COST = {
    "create": (1, 2),  # the idempotency claim's read, the job and the claim written
    "get": (1, 0),
    "modify": (1, 1),
    "get_record": (1, 0),
    "put_record": (0, 1),
    "modify_record": (1, 0),  # plus one write for each call that wrote (counted by kind)
    "append_event": (0, 1),  # one create (refused when the event was kept before: still one write tried)
}


class CountingStore:
    """A JobStore that counts each call (each chunk, each listed document, each record write by kind)
    before passing it on."""

    def __init__(self, inner: JobStore) -> None:
        self.inner = inner
        self.calls: Counter[str] = Counter()
        self.written: Counter[str] = Counter()  # record writes by kind

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
                self.written[args[0]] += 1
            return result

        return counted

    def clear(self) -> None:
        self.calls.clear()
        self.written.clear()

    def firestore_reads_writes(self) -> tuple[int, int]:
        """What the calls so far would cost on Firestore: (document reads, document writes)."""
        reads = sum(FIRESTORE_COST[m][0] * n for m, n in self.calls.items() if m in FIRESTORE_COST)
        writes = sum(FIRESTORE_COST[m][1] * n for m, n in self.calls.items() if m in FIRESTORE_COST)
        return reads + self.calls["listed_docs"], writes + self.calls["chunks"] + sum(self.written.values())


class FixedBoxes:
    """The pool's two boxes, up, both served by one stand-in agent."""

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
    """A task queue that only counts its pushes."""

    def __init__(self) -> None:
        self.pushes = 0

    def push(self, queue: str, payload: dict[str, Any], *, delay_s: float = 0.0) -> str:
        self.pushes += 1
        return "task"


@contextmanager
def stand_in_agent() -> Iterator[str]:
    """An agent on 127.0.0.1 (its own thread) that accepts every job handed to it; yields its URL."""

    async def accept(request: web.Request) -> web.Response:
        body = json.loads(await request.read())
        return web.json_response({"job_id": body["job_id"], "attempt": body["attempt"]}, status=202)

    app = web.Application()
    app.router.add_post("/v1/jobs", accept)
    with serve_app_in_thread(app, name="stand-in-agent") as url:
        yield url


def drive_job(cp: ControlPlane, prompt: str, reports: int) -> None:
    """One job through the core: submitted, handed over, ``reports`` progress reports of one chunk, succeeded."""
    job, _ = submit_job(cp, "store-calls", parse_job_create({"model": MODEL, "prompt": prompt}))
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
    result = JobResult(eval_count=reports, eval_duration_ns=10**9, prompt_eval_count=100, prompt_eval_duration_ns=10**8)
    ack = apply_report(cp, job.id, token, Report(attempt=current.attempt, outcome="succeeded", result=result))
    assert ack.status.value == "succeeded"
