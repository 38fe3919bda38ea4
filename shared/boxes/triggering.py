"""trigger's core: start the boxes waiting work needs; once an agent is ready, run its pool's waiting jobs
now; an idle agent asking to stop is drained or told to stay (``min_boxes``); an agent whose model
server cannot come up has its box stopped and another of its pool started."""

from __future__ import annotations

import logging
from typing import Any

from shared.boxes.instances import cold_start_estimate_s, note_ready
from shared.boxes.placement import retire_box, scale_up
from shared.boxes.pools import PoolConfig
from shared.boxes.rates import rates_for
from shared.boxes.registry import DrainAnswer, box_views, mark_failed, mark_ready, request_drain
from shared.controlplane import ControlPlane
from shared.jobs.lifecycle import redispatch_now, redrive
from shared.models import Job
from shared.states import JobStatus

__all__ = ["box_failed", "drain", "trigger"]

log = logging.getLogger("gpuq.trigger")


def trigger(
    cp: ControlPlane, *, ready_instance: str | None = None, phases: dict[str, float] | None = None
) -> dict[str, Any]:
    """An external ping (``ready_instance=None``) or an agent announcing it is ready (with the durations
    of its own start-up ``phases``: ``agent_up_s``, ``model_loaded_s``)."""
    waiting = cp.store.list_by_status([JobStatus.QUEUED, JobStatus.STARTING])
    if ready_instance is not None:
        return _ready(cp, ready_instance, phases or {}, waiting)
    started: list[str] = []
    for pool in cp.pools:
        if any(pool.serves(job.model) for job in waiting):
            started += scale_up(cp, pool, force=True)[1]
    return {"waiting": len(waiting), "started": bool(started), "boxes_started": started, "dispatched": 0}


def _ready(cp: ControlPlane, box_id: str, phases: dict[str, float], waiting: list[Job]) -> dict[str, Any]:
    pool = cp.pools.of_box(box_id)
    measured = note_ready(cp, box_id, phases, key=pool.name if pool else None)
    mine = [job for job in waiting if pool is None or pool.serves(job.model)]
    if pool is not None:
        mark_ready(cp, box_id, pool.name, {"reason": "agent_ready", **measured, "jobs_waiting": len(mine)})
    dispatched = sum(1 for job in mine if redispatch_now(cp, job))
    return {"waiting": len(waiting), "started": False, "dispatched": dispatched}


def _cost_per_token(cp: ControlPlane, pool: PoolConfig) -> dict[str, float]:
    """Each box's $ per output token: its price over the pool's measured decode rate."""
    rate = max((rates_for(cp, pool.name, m).decode_tps for m in pool.models), default=1.0) or 1.0
    out = {}
    for view in box_views(cp, pool):
        price = float((view.record.get("session") or {}).get("price_per_hour") or pool.price_per_hour)
        out[view.id] = price / 3600.0 / rate
    return out


def _idle_numbers(cp: ControlPlane, pool: PoolConfig) -> dict[str, Any]:
    """What the pool's idle policy weighs (shared/money/idle.py): the cold start and its break-even horizon."""
    cold = cold_start_estimate_s(cp, pool.name) or pool.cold_start_s
    numbers: dict[str, Any] = {"cold_start_estimate_s": round(cold, 3), "horizon_s": round(cold, 3)}
    if pool.idle_policy == "fixed":
        numbers["idle_grace_s"] = pool.idle_grace_s
    return numbers


def drain(cp: ControlPlane, box_id: str) -> DrainAnswer:
    """An idle agent asks to stop its box (before its self-stop)."""
    pool = cp.pools.of_box(box_id)
    if pool is None:
        return DrainAnswer(True, "not_in_a_pool")
    answer = request_drain(cp, box_id, pool, cost_per_token=_cost_per_token(cp, pool), detail=_idle_numbers(cp, pool))
    log.info("box %s asks to stop: %s (%s)", box_id, "granted" if answer.granted else "stay up", answer.reason)
    return answer


def box_failed(cp: ControlPlane, box_id: str, reason: str) -> dict[str, Any]:
    """An agent says its model server cannot come up (an ``on_error`` line, out of restarts, too slow):
    stop the box now rather than leave it billing, take it out of its pool (jobs still on it go to their
    next attempt), pass it over for ``box_failed_cooldown_s``, and run the pool's waiting jobs now, whose
    dispatch starts another box of the pool for them."""
    log.warning("box %s cannot serve: %s; stopping it", box_id, reason)
    stopped = cp.run(cp.provider.stop(box_id))
    pool = cp.pools.of_box(box_id)
    if pool is None:
        return {"failed": box_id, "state": stopped.state.value, "redriven": 0, "dispatched": 0}
    mark_failed(cp, box_id, reason)
    redriven = 0
    for job_id in retire_box(cp, pool, box_id, stopped):
        job = cp.store.get(job_id)
        if job is not None and job.status is JobStatus.RUNNING and job.instance_id == box_id:
            redrive(cp, job, reason="box_failed", force=True)
            redriven += 1
    waiting = [j for j in cp.store.list_by_status([JobStatus.QUEUED, JobStatus.STARTING]) if pool.serves(j.model)]
    dispatched = sum(1 for job in waiting if redispatch_now(cp, job))
    return {"failed": box_id, "state": stopped.state.value, "redriven": redriven, "dispatched": dispatched}
