"""reaper's core, run on a schedule: the backstop for everything dispatch, the lease checks and the
agent normally do themselves, so each check here holds even if the agent died without a word.

- waiting jobs past ``max_queue_s`` → expired; waiting jobs whose dispatch task was lost → re-dispatched;
- running jobs past ``timeout_s`` → failed (timeout); running jobs whose lease expired → re-driven;
- terminal jobs whose callback event was never tried → its delivery re-queued;
- the box idle past ``reaper_idle_limit_s`` → stopped; any other running box of ours the store does
  not know → stopped and logged.
"""

from __future__ import annotations

import logging
from collections import Counter
from typing import Any

from shared.boxes.instances import close_session, instance_record
from shared.controlplane import ControlPlane
from shared.jobs.callbacks import requeue_pending
from shared.jobs.handover import cancel_on_agent
from shared.jobs.lifecycle import finish, redispatch_now, redrive
from shared.models import InstanceState, Job, JobError
from shared.money.budget import check_budget
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


def _boxes(cp: ControlPlane, now: float, busy: bool, counts: Counter[str]) -> None:
    ours = cp.settings.instance_id
    for instance in cp.run(cp.provider.list()):
        if instance.state in (InstanceState.STOPPED, InstanceState.GONE):
            if instance_record(cp, instance.id).get("session"):
                close_session(cp, instance.id, stopped_at=instance.stopped_at or now)
                counts["sessions_closed"] += 1
            continue
        if instance.state is not InstanceState.RUNNING:
            continue
        if instance.id != ours:
            log.warning("instance %s is running but no job uses it: stopping it", instance.id)
            cp.run(cp.provider.stop(instance.id))
            counts["stopped_unknown"] += 1
            continue
        if busy:
            continue
        record = instance_record(cp, instance.id)
        last = record.get("last_activity_at") or instance.started_at or now
        if now - last > cp.settings.reaper_idle_limit_s:
            log.warning("instance %s idle for %.0fs and still running: the reaper stops it", instance.id, now - last)
            cp.run(cp.provider.stop(instance.id))
            counts["stopped_idle"] += 1


def reap(cp: ControlPlane) -> dict[str, Any]:
    now = cp.clock.now()
    counts: Counter[str] = Counter()
    waiting = _waiting(cp, now, counts)
    running = _running(cp, now, counts)
    _callbacks(cp, now, counts)
    _boxes(cp, now, busy=bool(waiting or running), counts=counts)
    reap_stopped = getattr(cp.provider, "reap_stopped", None)  # providers that bill stopped boxes (Vast)
    if reap_stopped is not None:
        counts["destroyed"] += len(cp.run(reap_stopped()))
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
