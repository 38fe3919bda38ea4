"""Where a job runs: a free slot on a box of its pool, or more boxes when the queue's work needs them.

:func:`find_slot` picks, among the pool's active boxes, the ready one with a free slot and the least
expected remaining work, and reserves the slot on the box's record (compare-and-set), so a box never gets
more than its ``jobs_per_box``. :func:`scale_up` weighs the pool's queued work against its measured
cold start (:mod:`shared.boxes.scaling`) and starts the boxes the pool lacks; the start itself is claimed
on the pool's record first, so racing dispatchers start each needed box once.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from shared.boxes.instances import close_session, cold_start_estimate_s, instance_record, start_box
from shared.boxes.pools import PoolConfig
from shared.boxes.rates import rates_for
from shared.boxes.registry import (
    POOL_KIND,
    BoxView,
    box_run,
    box_views,
    claim_starts,
    mark_stopped,
    pool_record,
    reserve_slot,
)
from shared.boxes.scaling import ScaleDecision, WorkRates, decide_target, expected_work_s
from shared.controlplane import ControlPlane
from shared.errors import ProviderError
from shared.models import Instance, InstanceState, Job
from shared.observability.events import announce
from shared.states import JobStatus

__all__ = [
    "SCALE_CHECK_S",
    "START_GRACE_S",
    "Placement",
    "find_slot",
    "job_work_s",
    "queued_work_s",
    "retire_box",
    "scale_up",
]

SCALE_CHECK_S = 1.0
"""How often (at most) the pool's queued work is weighed for a scale decision, across all instances."""

START_GRACE_S = 30.0
"""A box marked starting that its provider still calls stopped this long after the start is retired."""


@dataclass(frozen=True, slots=True)
class Placement:
    """A reserved slot: the job goes to ``instance`` (of ``pool``)."""

    instance: Instance
    pool: PoolConfig
    box: BoxView
    work_s: float


def job_work_s(cp: ControlPlane, pool: PoolConfig, job: Job, cache: dict[str, WorkRates] | None = None) -> float:
    """The job's expected seconds on one slot, at its pool and model's measured rates."""
    cache = {} if cache is None else cache
    rates = cache.get(job.model)
    if rates is None:
        rates = cache[job.model] = rates_for(cp, pool.name, job.model)
    return expected_work_s(rates, prompt=job.prompt, messages=job.messages, options=job.options)


def retire_box(
    cp: ControlPlane, pool: PoolConfig, box_id: str, instance: Instance | None, *, reason: str | None = None
) -> list[str]:
    """The provider says the box is down: out of the pool, its session charged. Returns its orphaned jobs.
    ``reason`` (else the one noted when gpuq stopped it) goes into its ``instance.stopped`` event."""
    record = instance_record(cp, box_id)
    if record.get("session"):
        close_session(cp, box_id, stopped_at=(instance.stopped_at if instance else None) or cp.clock.now())
    orphans = mark_stopped(cp, box_id, pool.name)
    gone = instance is None or instance.state is InstanceState.GONE
    data = {
        "pool": pool.name,
        "reason": reason or record.get("stop_reason") or ("gone" if gone else "stopped_by_itself_or_operator"),
        "provider_state": instance.state.value if instance else "gone",
        "orphaned_jobs": len(orphans),
        **((record.get("stop_detail") or {}) if reason is None else {}),  # the numbers of gpuq's own stop
    }
    announce(cp, "instance.stopped", box_id, data, source="placement", occurrence=box_run(record))
    return orphans


def _candidates(cp: ControlPlane, pool: PoolConfig, now: float) -> list[BoxView]:
    active = set(pool_record(cp, pool.name)["active"])
    views = [v for v in box_views(cp, pool) if v.id in active and v.state in ("starting", "ready")]
    usable = [v for v in views if v.free_slots(pool.jobs_per_box) > 0]
    return sorted(usable, key=lambda v: (v.state != "ready", v.remaining_work_s(now), v.id))


def find_slot(cp: ControlPlane, pool: PoolConfig, job_id: str, work_s: float) -> Placement | None:
    """Reserve a slot for the job on the best box that can take it now; None when none can."""
    now = cp.clock.now()
    for view in _candidates(cp, pool, now):
        instance = cp.run(cp.provider.get(view.id))
        if instance is None or instance.state in (InstanceState.STOPPED, InstanceState.GONE):
            started = view.start_requested_at or 0.0
            if view.state == "ready" or now - started > START_GRACE_S:
                retire_box(cp, pool, view.id, instance, reason=None if view.state == "ready" else "never_came_up")
            continue
        if instance.state is not InstanceState.RUNNING or not instance.agent_url:
            continue
        if reserve_slot(cp, view.id, job_id, work_s=work_s, slots=pool.jobs_per_box):
            return Placement(instance=instance, pool=pool, box=view, work_s=work_s)
    return None


def queued_work_s(cp: ControlPlane, pool: PoolConfig, waiting: Iterable[Job], active: list[BoxView]) -> float:
    """Seconds of work the pool has: its waiting jobs plus what remains of its running ones."""
    now = cp.clock.now()
    cache: dict[str, WorkRates] = {}
    queued = sum(job_work_s(cp, pool, job, cache) for job in waiting if pool.serves(job.model))
    return queued + sum(v.remaining_work_s(now) for v in active)


def _take_turn(cp: ControlPlane, pool: PoolConfig, now: float) -> bool:
    """Whether this caller weighs the pool's queue now: at most once per ``SCALE_CHECK_S`` across every
    functions instance (a compare-and-set on the pool record), so a queue of N jobs whose deliveries
    all snooze costs one listing per period, not N."""

    def mutate(current: dict[str, Any] | None) -> dict[str, Any] | None:
        record = {k: v for k, v in (current or {}).items() if k != "id"}
        if now - float(record.get("checked_at") or 0.0) < SCALE_CHECK_S:
            return None
        record["checked_at"] = now
        return record

    return cp.store.modify_record(POOL_KIND, pool.name, mutate)[1]


def scale_up(cp: ControlPlane, pool: PoolConfig, *, force: bool = False) -> tuple[ScaleDecision | None, list[str]]:
    """Start the boxes the pool's queued work needs (see :mod:`shared.boxes.scaling`); returns the decision
    and the boxes this call started. ``None`` when another caller weighed the queue within the last
    ``SCALE_CHECK_S`` (``force``: weigh it anyway, as the scheduled reaper and the external ping do)."""
    if not force and not _take_turn(cp, pool, cp.clock.now()):
        return None, []
    record = pool_record(cp, pool.name)
    for box_id in record["draining"]:  # a drained box that has stopped can be started again
        instance = cp.run(cp.provider.get(box_id))
        if instance is None or instance.state in (InstanceState.STOPPED, InstanceState.GONE):
            retire_box(cp, pool, box_id, instance)
    active_ids = set(record["active"])
    active = [v for v in box_views(cp, pool) if v.id in active_ids]
    waiting = [
        j for j in cp.store.list_by_status([JobStatus.QUEUED, JobStatus.STARTING], limit=5000) if pool.serves(j.model)
    ]
    cold = cold_start_estimate_s(cp, pool.name) or pool.cold_start_s
    decision = decide_target(
        jobs=len(waiting) + sum(len(v.running) for v in active),
        queued_work_s=queued_work_s(cp, pool, waiting, active),
        active=len(active_ids),
        slots_per_box=pool.jobs_per_box,
        cold_start_s=cold,
        max_boxes=pool.max_boxes,
        min_boxes=pool.min_boxes,
    )
    if decision.start == 0:
        return decision, []
    started = claim_starts(cp, pool, decision)
    for box_id in started:
        try:
            start_box(cp, box_id, cp.run(cp.provider.get(box_id)), pool=pool.name)
        except ProviderError as exc:
            mark_stopped(cp, box_id, pool.name)  # not started after all: the next decision may try again
            data = {"pool": pool.name, "reason": exc.code, "message": exc.message[:200]}
            run = box_run(instance_record(cp, box_id))
            announce(cp, "instance.failed", box_id, data, source="placement", occurrence=run)
            raise
    return decision, started
