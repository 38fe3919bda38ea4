"""What one job costs in store operations, on SQLite and on the Firestore emulator: jobs driven through the
real core (submit, dispatch onto a pool of two boxes, progress reports, the final report), with every
store call counted. The table is printed at the end of the run; the assertions pin what must not grow."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from aiohttp import web

from shared.boxes.pools import PoolConfig, Pools
from shared.clock import FakeClock
from shared.controlplane import ControlPlane
from shared.jobs.dispatcher import dispatch_job
from shared.jobs.events import Report, ReportChunk
from shared.jobs.intake import parse_job_create, submit_job
from shared.jobs.reports import apply_report
from shared.models import Instance, InstanceState, JobResult
from shared.security.signing import NonceCache, job_token
from shared.settings import ControlPlaneSettings
from shared.store.base import JobStore
from tests.contract.conftest import Backend
from tests.servers import serve_app_in_thread

POOL = PoolConfig(name="gpu", models=["llama3.2:1b"], max_boxes=2, jobs_per_box=2, cold_start_s=1.0)
# Firestore reads/writes of each store call, as shared/store/firestore.py makes them (a transaction reads
# the document it writes; a query reads every document it returns, counted by the caller below).
FIRESTORE_COST = {
    "create": (1, 2),  # the idempotency claim's read, the job and the claim written
    "get": (1, 0),
    "modify": (1, 1),
    "append_chunks": (0, 1),  # per chunk, counted per chunk below
    "get_record": (1, 0),
    "put_record": (0, 1),
    "modify_record": (1, 0),  # its writes: only the calls that wrote, counted below
    "append_event": (0, 1),  # one create (refused when the event was kept before: still one write tried)
}
TABLE: list[str] = []


class CountingStore:
    """A JobStore that counts each call (and each chunk, each listed document) before passing it on."""

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

    def firestore_reads_writes(self) -> tuple[int, int]:
        reads = sum(FIRESTORE_COST[m][0] * n for m, n in self.calls.items() if m in FIRESTORE_COST)
        writes = sum(
            FIRESTORE_COST[m][1] * n for m, n in self.calls.items() if m in FIRESTORE_COST and m != "append_chunks"
        )
        return reads + self.calls["listed_docs"], writes + self.calls["chunks"] + sum(self.written.values())


class FixedBoxes:
    """Two boxes that are up, both served by one stand-in agent that accepts every job."""

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


class NoQueue:
    def push(self, queue: str, payload: dict[str, Any], *, delay_s: float = 0.0) -> str:
        return "task"


@pytest.fixture
def agent_url() -> Iterator[str]:
    async def accept(request: web.Request) -> web.Response:
        body = json.loads(await request.read())
        return web.json_response({"job_id": body["job_id"], "attempt": body["attempt"]}, status=202)

    app = web.Application()
    app.router.add_post("/v1/jobs", accept)
    with serve_app_in_thread(app) as url:
        yield url


def _run_jobs(cp: ControlPlane, jobs: int, reports: int) -> None:
    request = parse_job_create({"model": "llama3.2:1b", "prompt": "count my store calls " * 20})
    for i in range(jobs):
        job, _ = submit_job(cp, "owner", request.model_copy(update={"prompt": f"{request.prompt} {i}"}))
        assert dispatch_job(cp, job.id, 0) in ("snoozed:provisioning_instance", "handed_over")
        if cp.store.get(job.id).status.value != "running":  # type: ignore[union-attr]
            assert dispatch_job(cp, job.id, 1) == "handed_over"  # the box's first job waits one snooze
        attempt = cp.store.get(job.id).attempt  # type: ignore[union-attr]
        token = job_token(cp.settings.job_token_secret, job.id, attempt)
        for seq in range(reports):
            chunk = ReportChunk(seq=seq, text="tok ")
            apply_report(cp, job.id, token, Report(attempt=attempt, started=seq == 0, chunks=[chunk]))
        result = JobResult(
            eval_count=reports, eval_duration_ns=10**9, prompt_eval_count=100, prompt_eval_duration_ns=10**8
        )
        ack = apply_report(cp, job.id, token, Report(attempt=attempt, outcome="succeeded", result=result))
        assert ack.status.value == "succeeded"


@pytest.mark.parametrize("reports", [4, 8])
def test_store_operations_per_job(backend: Backend, agent_url: str, reports: int) -> None:
    settings = ControlPlaneSettings(job_token_secret="s" * 32, agent_master_secret="m" * 32)
    store = CountingStore(backend.open())
    cp = ControlPlane(
        settings=settings,
        store=store,
        queue=NoQueue(),  # type: ignore[arg-type]
        provider=FixedBoxes(agent_url),
        nonces=NonceCache(),
        pools=Pools((POOL,)),
        clock=FakeClock(1000.0),
    )
    jobs = 10
    try:
        _run_jobs(cp, jobs, reports)
    finally:
        cp.http.close()
    reads, writes = store.firestore_reads_writes()
    calls = ", ".join(f"{name} {n / jobs:.1f}" for name, n in sorted(store.calls.items()))
    calls += ", record writes " + ", ".join(f"{kind} {n / jobs:.1f}" for kind, n in sorted(store.written.items()))
    TABLE.append(
        f"{backend.name:<9} {reports} reports/job: {reads / jobs:5.1f} reads, {writes / jobs:5.1f} writes per job "
        f"(Firestore cost model) | calls per job: {calls}"
    )
    # The box registry is written per handover and per finish, never per report (heartbeats are throttled).
    assert store.written["instance"] <= jobs * 4
    assert store.calls["modify"] <= jobs * (reports + 6)
    store.inner.close()


@pytest.fixture(scope="module", autouse=True)
def print_table(request: pytest.FixtureRequest) -> Iterator[None]:
    yield
    if TABLE:
        reporter = request.config.pluginmanager.get_plugin("terminalreporter")
        if reporter is not None:
            reporter.write_line("")
            for line in TABLE:
                reporter.write_line(f"store cost: {line}")
