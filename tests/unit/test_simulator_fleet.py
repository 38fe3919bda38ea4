"""The fleet simulator: a pool under the scale rule on a virtual clock (shared.sim.fleet)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from shared.money.idle import IdlePolicyConfig
from shared.sim.fleet import FleetConfig, simulate_fleet
from shared.sim.trace import TraceRequest

REPO = Path(__file__).resolve().parents[2]
TRACE = REPO.parent / "shared" / "traces" / "AzureLLMInferenceTrace_code_2023.csv"
FLEET = ["--max-boxes", "4", "--compare", "--json"]
IDLE = IdlePolicyConfig(policy="fixed", fixed_keep_warm_s=30.0, cold_start_s=5.0, price_per_hour=1.0)


def burst(n: int, at: float = 0.0) -> list[TraceRequest]:
    return [TraceRequest(offset_s=at, context_tokens=0, generated_tokens=10) for _ in range(n)]


def test_a_burst_starts_every_box_it_can_fill_and_drains_in_parallel() -> None:
    result = simulate_fleet(burst(10), IDLE, FleetConfig(max_boxes=4), [10.0] * 10)
    assert result.boxes_started == 4 and result.cold_starts == 4
    assert result.makespan_s == 5.0 + 3 * 10.0  # one cold start, then ceil(10 / 4) rounds of 10 s
    assert result.max_wait_s == 5.0 + 2 * 10.0
    one = simulate_fleet(burst(10), IDLE, FleetConfig(max_boxes=1), [10.0] * 10)
    assert one.makespan_s == 5.0 + 10 * 10.0 and one.boxes_started == 1


def test_no_box_starts_that_would_be_ready_only_after_the_queue_is_empty() -> None:
    # Two 1-second jobs, a 100-second cold start: a second box would come up long after both are done.
    slow_boot = IDLE.model_copy(update={"cold_start_s": 100.0})
    result = simulate_fleet(burst(2), slow_boot, FleetConfig(max_boxes=4), [1.0, 1.0])
    assert result.boxes_started == 1 and result.makespan_s == 102.0


def test_slots_run_jobs_side_by_side_and_idle_boxes_stop_after_their_keep_warm() -> None:
    result = simulate_fleet(burst(4), IDLE, FleetConfig(max_boxes=1, jobs_per_box=4), [10.0] * 4)
    assert result.makespan_s == 15.0 and result.max_wait_s == 5.0
    assert result.billed_gpu_hours * 3600 == 15.0 + 30.0  # boot + work + the keep-warm tail, then stopped


def test_min_boxes_stay_up_and_skip_the_cold_start() -> None:
    late = burst(1, at=1000.0)
    kept = simulate_fleet(late, IDLE, FleetConfig(max_boxes=2, min_boxes=1), [10.0])
    assert kept.max_wait_s == 0.0 and kept.cold_starts == 1  # the keeper booted at t=0 and never stopped
    cold = simulate_fleet(late, IDLE, FleetConfig(max_boxes=2), [10.0])
    assert cold.max_wait_s == 5.0


def test_gpuq_simulate_compares_pool_sizes_on_the_shared_trace() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "shared.sim.simulator", "--trace", str(TRACE), "--cold-start", "60", *FLEET],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=True,
    )
    rows = [json.loads(line) for line in done.stdout.splitlines()]
    assert [r["max_boxes"] for r in rows] == [1, 2, 4] and all(r["jobs"] == 8819 for r in rows)
    assert rows[2]["p95_wait_s"] < rows[1]["p95_wait_s"] < rows[0]["p95_wait_s"]
    assert rows[0]["boxes_started"] == 1 and rows[2]["boxes_started"] == 4
