"""reaper's core, run on a schedule: the backstop for everything dispatch, the lease checks and the
agent normally do themselves, so each check here holds even if the agent died without a word.

- waiting jobs past ``max_queue_s`` → expired; waiting jobs whose dispatch task was lost → re-dispatched;
- running jobs past ``timeout_s`` → failed (timeout); running jobs whose lease expired → re-driven;
- terminal jobs whose callback event was never tried → its delivery re-queued;
- each pool's boxes against their provider: a box seen down leaves its pool (its session charged, its
  jobs re-driven); a box whose agent has not reported for ``box_heartbeat_ttl_s`` while jobs run on it is
  lost (stopped, its jobs re-driven); a box idle past ``reaper_idle_limit_s`` is stopped (never under
  ``min_boxes``); any running box no pool names → stopped and logged.
"""

from __future__ import annotations

import logging
from collections import Counter
from typing import Any

from shared.boxes.instances import instance_record
from shared.boxes.placement import START_GRACE_S, retire_box, scale_up
from shared.boxes.pools import PoolConfig
from shared.boxes.registry import BoxView, box_run, box_views, change_box
from shared.controlplane import ControlPlane
from shared.jobs.callbacks import requeue_pending
from shared.jobs.handover import cancel_on_agent
from shared.jobs.lifecycle import finish, redispatch_now, redrive
from shared.models import Instance, InstanceState, Job, JobError
from shared.money.budget import check_budget
from shared.observability.events import announce
from shared.states import JobStatus

__all__ = ["reap"]

log = logging.getLogger("gpuq.reaper")

CALLBACK_STUCK_S = 60.0


def _waiting(cp: ControlPlane, now: float, counts: Counter[str]) -> int:
    waiting = cp.store.list_by_status([JobStatus.QUEUED, JobStatus.STARTING])
    for job in waiting:
        if now - job.queued_at > job.max_queue_s:
            finish(
                cp,
                job.id,
                JobStatus.EXPIRED,
                reason="max_queue_s_exceeded",
                error=JobError(code="expired", message=f"no GPU within max_queue_s={job.max_queue_s:g}s"),
            )
            counts["expired"] += 1
        elif now - (job.next_dispatch_at or job.queued_at) > cp.settings.lost_task_after_s:
            log.warning(
                "job %s: no dispatch for %.0fs past due; re-dispatching",
                job.id,
                now - (job.next_dispatch_at or job.queued_at),
            )
            redispatch_now(cp, job)
            counts["redispatched"] += 1
    return len(waiting)


def _running(cp: ControlPlane, now: float, counts: Counter[str]) -> int:
    running = cp.store.list_by_status([JobStatus.RUNNING])
    for job in running:
        started = job.started_at or job.queued_at
        if now - started > job.timeout_s + cp.settings.lease_s:
            done = finish(
                cp,
                job.id,
                JobStatus.FAILED,
                reason="timeout",
                attempt=job.attempt,
                error=JobError(code="timeout", message=f"ran longer than timeout_s={job.timeout_s:g}s"),
            )
            if done is not None and done.status is JobStatus.FAILED:
                cancel_on_agent(cp, done)
            counts["timed_out"] += 1
        elif job.lease_expires_at is not None and job.lease_expires_at < now:
            counts[redrive(cp, job)] += 1
    return len(running)


def _callbacks(cp: ControlPlane, now: float, counts: Counter[str]) -> None:
    for job in cp.store.list_by_status(
        [JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.CANCELLED, JobStatus.EXPIRED],
        limit=500,
        finished_before=now - CALLBACK_STUCK_S,
        with_pending_callbacks=True,
    ):
        counts["callbacks_requeued"] += requeue_pending(cp, job)


def _boxes(cp: ControlPlane, now: float, waiting: list[Job], counts: Counter[str]) -> None:
    """Each pool's boxes against what their provider says; then any running box no pool names."""
    listed = {instance.id: instance for instance in cp.run(cp.provider.list())}
    for pool in cp.pools:
        busy = any(pool.serves(job.model) for job in waiting)
        for view in box_views(cp, pool):
            _check_box(cp, pool, view, listed.get(view.id), now, busy, counts)
        if pool.min_boxes and not busy:
            counts["started_min_boxes"] += len(scale_up(cp, pool, force=True)[1])
    known = {box for pool in cp.pools for box in pool.box_ids()}
    for instance in listed.values():
        if instance.id not in known and instance.state is InstanceState.RUNNING:
            cp.run(cp.provider.stop(instance.id))
            data = {"pool": None, "reason": "in_no_pool", "provider_state": instance.state.value}
            window = f"{int(now // 300)}"  # one event per 5 minutes while it keeps running
            announce(cp, "instance.stopped", instance.id, data, source="reaper", occurrence=window)
            counts["stopped_unknown"] += 1


def _check_box(
    cp: ControlPlane,
    pool: PoolConfig,
    view: BoxView,
    instance: Instance | None,
    now: float,
    busy: bool,
    counts: Counter[str],
) -> None:
    if instance is None or instance.state in (InstanceState.STOPPED, InstanceState.GONE):
        if view.state == "starting" and now - (view.start_requested_at or now) <= START_GRACE_S:
            return  # its start is under way: a provider may show nothing yet (retiring it would rent another)
        if view.state != "stopped" or instance_record(cp, view.id).get("session"):
            counts["sessions_closed"] += 1
            _redrive_orphans(cp, view.id, retire_box(cp, pool, view.id, instance), counts)
        return
    if instance.state is not InstanceState.RUNNING:
        return
    ttl = cp.settings.box_heartbeat_ttl_s
    silent_s = now - (view.last_heartbeat or view.start_requested_at or now)
    if view.running and silent_s > ttl:
        _lost(cp, pool, view, silent_s)
        cp.run(cp.provider.stop(view.id))
        counts["stopped_lost"] += 1
        _redrive_orphans(cp, view.id, retire_box(cp, pool, view.id, instance, reason="lost"), counts)
        return
    last = view.last_activity_at or instance.started_at or now
    if not busy and not view.running and now - last > cp.settings.reaper_idle_limit_s:
        up = [v for v in box_views(cp, pool) if v.state in ("starting", "ready")]
        if view.state != "draining" and len(up) <= pool.min_boxes:
            return
        detail = {"idle_s": round(now - last, 3), "idle_limit_s": cp.settings.reaper_idle_limit_s}
        _note_stop(cp, view.id, "reaper_idle_limit", detail)
        cp.run(cp.provider.stop(view.id))
        counts["stopped_idle"] += 1


def _note_stop(cp: ControlPlane, box_id: str, reason: str, detail: dict[str, Any]) -> None:
    """Why gpuq stops the box, for its ``instance.stopped`` event once the provider says it is down."""

    def change(record: dict[str, Any]) -> None:
        record.update(stop_reason=reason, stop_detail=detail)

    change_box(cp, box_id, change)


def _lost(cp: ControlPlane, pool: PoolConfig, view: BoxView, silent_s: float) -> None:
    """A box whose agent went silent while jobs run on it: lost (the reaper stops it next)."""
    data = {
        "pool": pool.name,
        "reason": "no_heartbeat",
        "silent_s": round(silent_s, 3),
        "heartbeat_ttl_s": cp.settings.box_heartbeat_ttl_s,
        "running_jobs": len(view.running),
    }
    run = box_run(view.record)
    announce(cp, "instance.lost", view.id, data, source="reaper", occurrence=run)
    announce(cp, "health.unhealthy", view.id, {"component": "agent", **data}, source="reaper", occurrence=run)


def _redrive_orphans(cp: ControlPlane, box_id: str, job_ids: list[str], counts: Counter[str]) -> None:
    """Jobs still running on a box that is gone: their next attempt, now (not at their lease's end)."""
    for job_id in job_ids:
        job = cp.store.get(job_id)
        if job is not None and job.status is JobStatus.RUNNING and job.instance_id == box_id:
            counts[redrive(cp, job, reason="box_lost", force=True)] += 1


def reap(cp: ControlPlane) -> dict[str, Any]:
    now = cp.clock.now()
    counts: Counter[str] = Counter()
    waiting = _waiting(cp, now, counts)
    running = _running(cp, now, counts)
    _callbacks(cp, now, counts)
    _boxes(cp, now, cp.store.list_by_status([JobStatus.QUEUED, JobStatus.STARTING]), counts)
    reap_stopped = getattr(cp.provider, "reap_stopped", None)  # providers that bill stopped boxes (Vast)
    if reap_stopped is not None:
        for box_id in cp.run(reap_stopped()):
            data = {"pool": getattr(cp.pools.of_box(box_id), "name", None), "reason": "stopped_rental_destroyed"}
            run = box_run(instance_record(cp, box_id))
            announce(cp, "instance.destroyed", box_id, data, source="reaper", occurrence=run)
            counts["destroyed"] += 1
    budget = check_budget(cp)
    if budget.get("budget_exceeded"):
        counts["waiting_for_budget"] = _mark_budget_wait(cp)
    if counts:
        log.info("reaper: %s", dict(counts))
    return {"waiting": waiting, "running": running, **counts, **budget}


def _mark_budget_wait(cp: ControlPlane) -> int:
    """Say why waiting jobs do not move while the job queue is paused for the budget."""
    marked = 0
    for job in cp.store.list_by_status([JobStatus.QUEUED, JobStatus.STARTING]):

        def mutate(current: Job) -> Job | None:
            if not current.status.is_waiting() or current.status_reason == "budget_exceeded":
                return None
            current.status_reason = "budget_exceeded"
            return current

        cp.store.modify(job.id, mutate)
        marked += 1
    return marked
