"""The box registry on a real SQLite file: slots, starts and drains decided by compare-and-set, so racing
functions instances never overfill a box, start a box twice for one need, or drain a busy box."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TypeVar

import pytest

from shared.boxes.pools import PoolConfig, Pools
from shared.boxes.providers.local import LocalProvider
from shared.boxes.registry import (
    box_views,
    claim_starts,
    mark_ready,
    mark_stopped,
    pool_record,
    release_slot,
    request_drain,
    reserve_slot,
)
from shared.boxes.scaling import decide_target
from shared.clock import FakeClock
from shared.controlplane import ControlPlane
from shared.security.signing import NonceCache
from shared.settings import ControlPlaneSettings
from shared.store import SqliteJobStore
from shared.store.queue import TaskQueue

T = TypeVar("T")
POOL = PoolConfig(name="gpu", models=["m"], min_boxes=0, max_boxes=3, jobs_per_box=3)


def _plane(tmp_path: Path, pool: PoolConfig) -> ControlPlane:
    settings = ControlPlaneSettings(data_dir=tmp_path)
    return ControlPlane(
        settings=settings,
        store=SqliteJobStore(tmp_path / "gpuq.db"),
        queue=TaskQueue(settings),
        provider=LocalProvider(tmp_path / "boxes"),
        nonces=NonceCache(),
        pools=Pools((pool,)),
        clock=FakeClock(1000.0),
    )


@pytest.fixture
def planes(tmp_path: Path) -> Iterator[list[ControlPlane]]:
    """Eight control planes (one per racing thread), each its own connection to one store file."""
    made = [_plane(tmp_path, POOL) for _ in range(8)]
    yield made
    for cp in made:
        cp.store.close()


def race(planes: list[ControlPlane], action: Callable[[ControlPlane, int], T]) -> list[T]:
    barrier = threading.Barrier(len(planes))
    results: list[T | None] = [None] * len(planes)

    def run(i: int) -> None:
        barrier.wait()
        results[i] = action(planes[i], i)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(planes))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return [r for r in results if r is not None]


def _started(cp: ControlPlane, target: int) -> list[str]:
    decision = decide_target(queued_work_s=float(target), active=0, slots_per_box=1, cold_start_s=1.0, max_boxes=3)
    return claim_starts(cp, POOL, decision)


def test_racing_deciders_with_one_need_start_its_boxes_once(planes: list[ControlPlane]) -> None:
    started = race(planes, lambda cp, _: _started(cp, 2))
    assert sorted(b for got in started for b in got) == ["gpu-1", "gpu-2"]
    assert pool_record(planes[0], "gpu")["active"] == ["gpu-1", "gpu-2"]
    assert [v.state for v in box_views(planes[0], POOL)] == ["starting", "starting", "stopped"]
    assert _started(planes[0], 3) == ["gpu-3"]  # more work: the one box missing, and only it


def test_a_box_never_takes_more_jobs_than_its_slots(planes: list[ControlPlane]) -> None:
    _started(planes[0], 1)
    taken = race(planes, lambda cp, i: reserve_slot(cp, "gpu-1", f"job-{i}", work_s=5.0, slots=3))
    assert taken.count(True) == 3
    (box, *_) = box_views(planes[0], POOL)
    assert len(box.running) == 3 and box.remaining_work_s(1000.0) == pytest.approx(15.0)
    release_slot(planes[0], "gpu-1", next(iter(box.running)))
    assert reserve_slot(planes[0], "gpu-1", "job-late", work_s=1.0, slots=3)


def test_a_busy_box_never_drains_and_a_draining_box_takes_no_job(planes: list[ControlPlane]) -> None:
    cp = planes[0]
    _started(cp, 2)
    for box in ("gpu-1", "gpu-2"):
        mark_ready(cp, box, "gpu")
    assert reserve_slot(cp, "gpu-1", "job-a", work_s=5.0, slots=3)
    assert request_drain(cp, "gpu-1", POOL, cost_per_token={}).reason == "busy"
    answer = request_drain(cp, "gpu-2", POOL, cost_per_token={})
    assert (answer.granted, answer.reason) == (True, "idle")
    assert not reserve_slot(cp, "gpu-2", "job-b", work_s=5.0, slots=3)
    assert pool_record(cp, "gpu")["draining"] == ["gpu-2"] and pool_record(cp, "gpu")["active"] == ["gpu-1"]
    assert _started(cp, 2) == ["gpu-3"]  # the draining box is not counted, nor started again, until it stopped
    assert mark_stopped(cp, "gpu-2", "gpu") == []
    assert pool_record(cp, "gpu")["draining"] == []


def test_racing_drains_and_reservations_never_leave_a_job_on_a_draining_box(planes: list[ControlPlane]) -> None:
    _started(planes[0], 1)
    mark_ready(planes[0], "gpu-1", "gpu")

    def act(cp: ControlPlane, i: int) -> bool:
        if i % 2:
            return request_drain(cp, "gpu-1", POOL, cost_per_token={}).granted
        return reserve_slot(cp, "gpu-1", f"job-{i}", work_s=1.0, slots=3)

    race(planes, act)
    (box, *_) = box_views(planes[0], POOL)
    assert (box.state == "draining") != bool(box.running)  # drained and empty, or kept and busy


def test_min_boxes_keeps_the_idle_boxes_cheapest_per_token(tmp_path: Path) -> None:
    pool = POOL.model_copy(update={"min_boxes": 1})
    cp = _plane(tmp_path, pool)
    claim_starts(cp, pool, decide_target(queued_work_s=9, active=0, slots_per_box=1, cold_start_s=1, max_boxes=3))
    for box in ("gpu-1", "gpu-2", "gpu-3"):
        mark_ready(cp, box, "gpu")
    costs = {"gpu-1": 3e-6, "gpu-2": 1e-6, "gpu-3": 2e-6}
    answers = {box: request_drain(cp, box, pool, cost_per_token=costs) for box in ("gpu-1", "gpu-2", "gpu-3")}
    assert {box: a.granted for box, a in answers.items()} == {"gpu-1": True, "gpu-2": False, "gpu-3": True}
    assert answers["gpu-2"].reason == "min_boxes"
    cp.store.close()
