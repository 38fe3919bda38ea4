"""What one job costs in store operations, on SQLite and on the Firestore emulator: jobs driven through the
real core (submit, dispatch onto a pool of two boxes, progress reports, the final report), with every
store call counted. The table is printed at the end of the run; the assertions pin what must not grow."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from bench.store_calls import POOL, CountingQueue, CountingStore, FixedBoxes, drive_job, stand_in_agent
from shared.boxes.pools import Pools
from shared.clock import FakeClock
from shared.controlplane import ControlPlane
from shared.security.signing import NonceCache
from shared.settings import ControlPlaneSettings
from tests.contract.conftest import Backend

TABLE: list[str] = []


@pytest.fixture
def agent_url() -> Iterator[str]:
    with stand_in_agent() as url:
        yield url


@pytest.mark.parametrize("reports", [4, 8])
def test_store_operations_per_job(backend: Backend, agent_url: str, reports: int) -> None:
    settings = ControlPlaneSettings(job_token_secret="s" * 32, agent_master_secret="m" * 32)
    store = CountingStore(backend.open())
    cp = ControlPlane(
        settings=settings,
        store=store,
        queue=CountingQueue(),  # type: ignore[arg-type]
        provider=FixedBoxes(agent_url),
        nonces=NonceCache(),
        pools=Pools((POOL,)),
        clock=FakeClock(1000.0),
    )
    jobs = 10
    try:
        for i in range(jobs):
            drive_job(cp, "count my store calls " * 20 + str(i), reports)
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
