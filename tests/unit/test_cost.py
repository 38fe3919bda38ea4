"""Cost allocation: a hand-computed scenario, and every billed second charged to exactly one job."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from shared.boxes.instances import close_session, note_handover, note_ready, note_start_requested
from shared.boxes.pools import load_pools
from shared.boxes.providers.local import LocalProvider
from shared.clock import FakeClock
from shared.controlplane import ControlPlane
from shared.models import Instance, InstanceState, Job
from shared.money.cost import Session, Span, allocate_seconds
from shared.money.costreport import cost_report, parse_since
from shared.security.signing import NonceCache
from shared.settings import ControlPlaneSettings
from shared.states import JobStatus
from shared.store import SqliteJobStore
from shared.store.queue import TaskQueue

# Box billed 36 $/h = 0.01 $/s. Start requested at 0, ready at 100, stopped at 400.
# A: queued 0, runs 100-200.  B: queued 50, runs 150-250.  C: queued 260, runs 300-320.
#   cold start 0-100 → A and B waited for it: 50 s each
#   100-150 A alone: A 50 | 150-200 A and B: 25 each | 200-250 B alone: B 50
#   250-300 idle, ended by C: C 50 | 300-320 C: 20 | 320-400 idle tail after the last job: C 80
HAND = {"A": 50 + 50 + 25, "B": 50 + 25 + 50, "C": 50 + 20 + 80}
SPANS = [Span("A", 0, 100, 200), Span("B", 50, 150, 250), Span("C", 260, 300, 320)]


def test_hand_computed_allocation() -> None:
    seconds = allocate_seconds(Session("box", 36.0, 0, 100, 400), SPANS, now=1000)
    assert seconds == pytest.approx(HAND)
    assert sum(seconds.values()) == pytest.approx(400)


def test_session_close_writes_each_jobs_cost_and_the_report_adds_up(tmp_path: Path) -> None:
    clock = FakeClock(0.0)
    s = ControlPlaneSettings(data_dir=tmp_path)
    cp = ControlPlane(
        settings=s,
        store=SqliteJobStore(tmp_path / "s.db"),
        queue=TaskQueue(s),
        provider=LocalProvider(tmp_path / "boxes"),
        nonces=NonceCache(),
        pools=load_pools(s),
        clock=clock,
    )
    box = Instance(id="box", provider="local", state=InstanceState.RUNNING, price_per_hour=36.0)
    note_start_requested(cp, "box", 36.0)
    for span in SPANS:
        cp.store.create(
            Job(
                id=span.job_id,
                owner="o",
                model="m" if span.job_id != "C" else "n",
                prompt="p",
                max_queue_s=600,
                timeout_s=60,
                queued_at=span.queued_s,
                handed_at=span.begin_s,
                finished_at=span.end_s,
                status=JobStatus.SUCCEEDED,
            ),
            None,
        )
    clock.advance(100)
    note_ready(cp, "box")
    for span in SPANS:
        note_handover(cp, box, span.job_id)
    clock.advance(300)
    closed = close_session(cp, "box", stopped_at=400.0)
    assert closed is not None and closed["cost_usd"] == pytest.approx(4.0)
    assert {j: getattr(cp.store.get(j), "cost_usd", None) for j in HAND} == pytest.approx(
        {j: v / 100 for j, v in HAND.items()}
    )
    report = cost_report(cp, parse_since("1h"))
    assert report["billed_usd"] == pytest.approx(4.0) and report["cold_starts"] == 1
    assert report["per_model"]["m"]["usd"] == pytest.approx(2.5) and report["per_model"]["n"]["jobs"] == 1
    # busy = union of 100-250 and 300-320 = 170 of 400 billed seconds
    assert report["idle_fraction"] == pytest.approx(1 - 170 / 400, abs=1e-4)
    cp.store.close()


spans = st.lists(
    st.tuples(st.floats(0, 500), st.floats(0, 500), st.floats(0, 100)).map(
        lambda t: (t[0], t[0] + t[1], t[0] + t[1] + t[2])
    ),
    min_size=1,
    max_size=8,
)


@settings(max_examples=200, deadline=None)
@given(spans, st.floats(0, 200), st.floats(0, 300))
def test_every_billed_second_goes_to_exactly_one_job(
    raw: list[tuple[float, float, float]], ready_after: float, tail: float
) -> None:
    jobs = [Span(f"j{i}", q, b, e) for i, (q, b, e) in enumerate(raw)]
    start = min(j.begin_s for j in jobs) - ready_after
    stop = max(j.end_s for j in jobs) + tail
    seconds = allocate_seconds(Session("box", 1.0, start, start + ready_after, stop), jobs, now=stop)
    assert sum(seconds.values()) == pytest.approx(stop - start, rel=1e-9, abs=1e-6)
    assert all(v >= -1e-9 for v in seconds.values())
