"""A box whose model server could not come up: stopped, out of its pool, passed over by the next starts for
the cooldown; and what a job waiting on a box that is coming up says."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from shared.boxes.pools import PoolConfig, Pools
from shared.boxes.providers.local import LocalProvider
from shared.boxes.registry import box_views, claim_starts, cooling_down, mark_failed, mark_ready, pool_record
from shared.boxes.scaling import decide_target
from shared.boxes.triggering import box_failed
from shared.clock import FakeClock
from shared.controlplane import ControlPlane
from shared.jobs.handover import waiting_reason
from shared.security.signing import NonceCache
from shared.settings import ControlPlaneSettings
from shared.store import SqliteJobStore
from shared.store.queue import TaskQueue

POOL = PoolConfig(name="gpu", models=["m"], max_boxes=3, jobs_per_box=1)


@pytest.fixture
def cp(tmp_path: Path) -> Iterator[ControlPlane]:
    settings = ControlPlaneSettings(data_dir=tmp_path, box_failed_cooldown_s=300.0)
    plane = ControlPlane(
        settings=settings,
        store=SqliteJobStore(tmp_path / "gpuq.db"),
        queue=TaskQueue(settings),
        provider=LocalProvider(tmp_path / "boxes"),  # no box process runs: every stop finds it stopped
        nonces=NonceCache(),
        pools=Pools((POOL,)),
        clock=FakeClock(1000.0),
    )
    yield plane
    plane.store.close()


def _start_one(cp: ControlPlane) -> list[str]:
    active = len(pool_record(cp, "gpu")["active"])
    need = decide_target(queued_work_s=1.0 + active, active=active, slots_per_box=1, cold_start_s=1.0, max_boxes=3)
    return claim_starts(cp, POOL, need)


def test_a_failed_box_is_stopped_out_of_its_pool_and_passed_over_until_its_cooldown_ends(cp: ControlPlane) -> None:
    assert _start_one(cp) == ["gpu-1"]
    answer = box_failed(cp, "gpu-1", "ggml_cuda_init: CUDA out of memory")
    assert answer == {"failed": "gpu-1", "state": "stopped", "redriven": 0, "dispatched": 0}
    box = box_views(cp, POOL)[0]
    assert box.state == "stopped" and box.record["failures"] == 1
    assert box.record["failed_reason"] == "ggml_cuda_init: CUDA out of memory"
    assert pool_record(cp, "gpu")["active"] == [] and cooling_down(cp, POOL) == {"gpu-1"}
    assert _start_one(cp) == ["gpu-2"]  # the pool's next start is another box
    assert isinstance(cp.clock, FakeClock)
    cp.clock.advance(301.0)
    assert cooling_down(cp, POOL) == set()
    assert _start_one(cp) == ["gpu-1"]  # past the cooldown it is tried again


def test_failures_count_in_a_row_and_a_ready_resets_them(cp: ControlPlane) -> None:
    mark_failed(cp, "gpu-1", "first")
    mark_failed(cp, "gpu-1", "second")
    assert box_views(cp, POOL)[0].record["failures"] == 2
    mark_ready(cp, "gpu-1", "gpu")
    assert box_views(cp, POOL)[0].record["failures"] == 0


def test_a_job_waiting_on_a_box_coming_up_says_what_the_box_does() -> None:
    assert waiting_reason("loading_model", "Downloading model.safetensors 43%") == (
        "loading_model: Downloading model.safetensors 43%"
    )
    assert waiting_reason("starting_instance", "agent is starting_instance") == "starting_instance"
    assert waiting_reason("agent_busy", "4 jobs already running") == "agent_busy"  # not a start-up phase
    assert waiting_reason("", None) == "agent_busy"
    assert len(waiting_reason("loading_model", "x" * 500)) == 120
