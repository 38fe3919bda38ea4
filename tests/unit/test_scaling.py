"""The scale rule: the fewest boxes that drain the queued work within one cold start, up to max_boxes."""

from __future__ import annotations

import math

import pytest

from shared.boxes.scaling import WorkRates, decide_target, expected_work_s


def test_a_jobs_work_is_its_prompt_over_prefill_plus_its_output_over_decode() -> None:
    rates = WorkRates(prefill_tps=100.0, decode_tps=10.0, typical_output_tokens=50.0)
    assert expected_work_s(rates, prompt="x" * 400) == pytest.approx(400 / 4 / 100 + 50 / 10)
    assert expected_work_s(rates, messages=[{"content": "y" * 40}], options={"num_predict": 20}) == pytest.approx(
        0.1 + 2.0
    )
    assert expected_work_s(rates, options={"max_tokens": True}) == pytest.approx(5.0)  # not a number of tokens


@pytest.mark.parametrize(
    ("work", "active", "slots", "cold", "max_boxes", "target"),
    [
        (0.0, 0, 4, 60.0, 3, 0),  # nothing waits: nothing starts
        (1.0, 0, 4, 60.0, 3, 1),  # work waits and no box: one
        (239.0, 1, 4, 60.0, 3, 1),  # one box drains it (239 s / 4 slots) before another could be ready
        (241.0, 1, 4, 60.0, 3, 2),
        (10_000.0, 1, 4, 60.0, 3, 3),  # never more than max_boxes
    ],
)
def test_the_target_is_the_fewest_boxes_that_drain_the_queue_within_one_cold_start(
    work: float, active: int, slots: int, cold: float, max_boxes: int, target: int
) -> None:
    decision = decide_target(
        queued_work_s=work, active=active, slots_per_box=slots, cold_start_s=cold, max_boxes=max_boxes
    )
    assert decision.target == target
    assert decision.start == max(0, target - active)
    if decision.start and active:
        assert decision.drain_s > cold  # a started box is ready before the queue is empty
    if target and target < max_boxes:
        assert work / (target * slots) <= cold


def test_no_more_boxes_than_the_jobs_can_fill() -> None:
    one_long_job = decide_target(queued_work_s=600.0, active=0, slots_per_box=1, cold_start_s=10, max_boxes=4, jobs=1)
    assert one_long_job.target == 1
    five = decide_target(queued_work_s=600.0, active=1, slots_per_box=2, cold_start_s=10, max_boxes=4, jobs=5)
    assert five.target == 3  # ceil(5 jobs / 2 slots), though the work alone would want 30 boxes


def test_min_boxes_is_the_floor_and_the_numbers_are_kept() -> None:
    idle = decide_target(queued_work_s=0.0, active=0, slots_per_box=1, cold_start_s=30.0, max_boxes=4, min_boxes=2)
    assert idle.target == 2
    busy = decide_target(queued_work_s=90.0, active=1, slots_per_box=1, cold_start_s=30.0, max_boxes=4)
    assert busy.numbers() == {
        "target": 3,
        "active": 1,
        "queued_work_s": 90.0,
        "cold_start_s": 30.0,
        "slots_per_box": 1,
        "max_boxes": 4,
        "drain_s": 90.0,
    }
    assert "90s on 1 box" in busy.reason()
    assert math.isinf(decide_target(queued_work_s=1, active=0, slots_per_box=1, cold_start_s=1, max_boxes=1).drain_s)
