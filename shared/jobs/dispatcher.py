"""dispatch's core: one queue delivery for one job. Returns in seconds, never waits for a generation.

Box not up → start it and snooze. Box up → hand the job to the agent (idempotent by job id on the
agent) and mark it running. Stale or duplicate deliveries are acknowledged and dropped.
"""

from __future__ import annotations

import logging

from shared.boxes.instances import note_handover
from shared.boxes.placement import Placement, find_slot, job_work_s, scale_up
from shared.boxes.pools import PoolConfig
from shared.boxes.registry import box_views, mark_ready, pool_record, release_slot
from shared.controlplane import ControlPlane
from shared.errors import AgentUnreachable, ProviderError, TryLater, ValidationFailed
from shared.jobs.events import AgentJobAccepted
from shared.jobs.handover import cancel_on_agent, hand_over
from shared.jobs.lifecycle import finish, push_dispatch, push_lease_check, snooze
from shared.models import Instance, Job, JobError
from shared.money.budget import budget_exceeded, check_budget
from shared.observability.events import announce
from shared.states import JobStatus

__all__ = ["dispatch_job"]

log = logging.getLogger("gpuq.dispatch")

HANDING_OVER = "handing_over"


def dispatch_job(cp: ControlPlane, job_id: str, seq: int) -> str:
    """Handle one dispatch task. Returns a short outcome word for the log and the HTTP answer."""
    job = cp.store.get(job_id)
    if job is None:
        return "unknown_job"
    now = cp.clock.now()
    skipped = _not_current(job, seq) or _expire_if_overdue(cp, job, now)
    if skipped:
        return skipped
    placed = _box_or_snooze(cp, job, seq)
    if isinstance(placed, str):
        return placed
    instance = placed.instance
    reserved = _reserve(cp, job, seq, instance, now)
    if reserved is None:
        release_slot(cp, instance.id, job_id)
        return "raced"
    accepted = _hand_over_or_back_off(cp, job, seq, reserved, instance)
    if isinstance(accepted, str):
        release_slot(cp, instance.id, job_id)
        return accepted
    if placed.box.state != "ready":
        mark_ready(cp, instance.id, placed.pool.name)
    confirmed = _confirm(cp, job_id, reserved.attempt, accepted)
    if confirmed is not None and confirmed.status.is_terminal():
        cancel_on_agent(cp, confirmed)  # cancelled while being handed over
        release_slot(cp, instance.id, job_id)
        return "cancelled_meanwhile"
    push_lease_check(cp, job_id, accepted.attempt, delay_s=cp.settings.lease_s + 0.5)
    note_handover(cp, instance, job_id)
    log.info(
        "job %s handed to %s of pool %s (attempt %d%s)",
        job_id,
        instance.id,
        placed.pool.name,
        accepted.attempt,
        ", duplicate" if accepted.duplicate else "",
    )
    return "handed_over"


def _not_current(job: Job, seq: int) -> str | None:
    """Why this delivery has nothing to do (a duplicate, a stale snooze), or None when it is the current one."""
    if job.status.is_terminal():
        return "already_finished"
    if job.status is JobStatus.RUNNING:
        return "already_running"
    if seq != job.dispatch_seq:
        return "stale_task"
    return None


def _expire_if_overdue(cp: ControlPlane, job: Job, now: float) -> str | None:
    if now - job.queued_at <= job.max_queue_s:
        return None
    finish(
        cp,
        job.id,
        JobStatus.EXPIRED,
        reason="max_queue_s_exceeded",
        error=JobError(code="expired", message=f"no GPU within max_queue_s={job.max_queue_s:g}s"),
    )
    return "expired"


def _box_or_snooze(cp: ControlPlane, job: Job, seq: int) -> Placement | str:
    """A reserved slot on a box for the job, or the outcome of snoozing the job until there is one."""
    settings = cp.settings
    if budget_exceeded(cp):  # the queue is paused too; this catches deliveries already in flight
        snooze(cp, job, seq, reason="budget_exceeded", delay_s=max(settings.snooze_s, 30.0))
        return "snoozed:budget_exceeded"
    try:
        return _place(cp, job)
    except TryLater as wait:
        snooze(cp, job, seq, reason=wait.reason, delay_s=wait.delay_s)
        return f"snoozed:{wait.reason}"
    except ValidationFailed as exc:  # the pools changed since the job was accepted: no pool serves it now
        finish(cp, job.id, JobStatus.FAILED, reason=exc.code, error=JobError(code=exc.code, message=exc.message))
        return exc.code
    except ProviderError as exc:
        log.warning("job %s: %s; retrying in %.0fs", job.id, exc.message, settings.snooze_s)
        snooze(cp, job, seq, reason=exc.code, delay_s=settings.snooze_s)
        _degraded(cp, cp.pools.route(job.model).name, "provider", exc.code, exc.message, every_s=300.0)
        return f"snoozed:{exc.code}"


def _place(cp: ControlPlane, job: Job) -> Placement:
    """A free slot on a box of the job's pool, or :class:`TryLater` saying why not yet (starting the boxes
    the pool's queued work needs)."""
    settings = cp.settings
    pool = cp.pools.route(job.model)
    placed = find_slot(cp, pool, job.id, job_work_s(cp, pool, job))
    if placed is not None:
        return placed
    if check_budget(cp).get("budget_exceeded"):  # measured now: never start a box past the cap
        raise TryLater("over budget", delay_s=max(settings.snooze_s, 30.0), reason="budget_exceeded")
    decision, started = scale_up(cp, pool)
    if started:
        log.info("job %s waits: started %s for pool %s", job.id, ", ".join(started), pool.name)
        raise TryLater("instance starting", delay_s=settings.snooze_s, reason="provisioning_instance")
    if (decision is None or decision.active > 0) and _all_full(cp, pool):
        raise TryLater("every box of the pool is busy", delay_s=settings.snooze_s, reason="waiting_for_slot")
    raise TryLater("box starting", delay_s=settings.snooze_s, reason="provisioning_instance")


def _all_full(cp: ControlPlane, pool: PoolConfig) -> bool:
    active = set(pool_record(cp, pool.name)["active"])
    views = [v for v in box_views(cp, pool) if v.id in active]
    return bool(views) and all(v.state == "ready" and not v.free_slots(pool.jobs_per_box) for v in views)


def _reserve(cp: ControlPlane, job: Job, seq: int, instance: Instance, now: float) -> Job | None:
    """Take the job's next attempt for this delivery; None when another delivery moved the job first.

    Reserved before the agent hears of it, so its first report always finds the job with that attempt
    (the fencing token), whichever arrives first. Clients see "starting · handing_over". A reservation
    another delivery holds (several functions instances got the same task) is never taken over while
    its lease runs: that delivery may be talking to an agent right now with that attempt.
    """
    lease_s = cp.settings.lease_s
    taken: list[int] = []

    def reserve(current: Job) -> Job | None:
        taken.clear()
        if not current.status.is_waiting() or current.dispatch_seq != seq:
            return None
        if _reserved(current) and (current.lease_expires_at or 0.0) > now:
            return None
        taken.append(current.attempt + 1)  # from the stored job: an attempt number is never used twice
        current.status = JobStatus.STARTING
        current.status_reason = HANDING_OVER
        current.attempt = taken[0]
        current.instance_id = instance.id
        current.handed_at = now
        current.lease_expires_at = now + lease_s
        return current

    reserved = cp.store.modify(job.id, reserve)
    if not taken or reserved is None or not _reserved(reserved) or reserved.attempt != taken[0]:
        _recheck_held(cp, job.id, seq, now)
        return None
    return reserved


def _recheck_held(cp: ControlPlane, job_id: str, seq: int, now: float) -> None:
    """Another delivery holds the job's reservation: look again once it would have expired, so a holder
    that died mid-handover (its process killed) does not leave the job waiting forever."""
    held = cp.store.get(job_id)
    if held is not None and _reserved(held) and held.dispatch_seq == seq and held.lease_expires_at is not None:
        push_dispatch(cp, job_id, seq, delay_s=max(0.0, held.lease_expires_at - now) + 0.5)


def _hand_over_or_back_off(
    cp: ControlPlane, job: Job, seq: int, reserved: Job, instance: Instance
) -> AgentJobAccepted | str:
    """Hand the reserved attempt to the agent: its answer, or the outcome of backing off (snooze, fail)."""
    attempt = reserved.attempt
    try:
        return hand_over(cp, reserved, instance)
    except TryLater as wait:
        _unreserve(cp, job.id, attempt, keep_attempt=False)
        snooze(cp, job, seq, reason=wait.reason, delay_s=wait.delay_s)
        return f"snoozed:{wait.reason}"
    except AgentUnreachable as exc:
        # Ambiguous: the agent may have started it. The attempt stays used, so a late report of it is fenced.
        _unreserve(cp, job.id, attempt, keep_attempt=True)
        log.warning("job %s: %s; retrying in %.0fs", job.id, exc.message, cp.settings.snooze_s)
        snooze(cp, job, seq, reason=exc.code, delay_s=cp.settings.snooze_s)
        _degraded(cp, instance.id, "agent", exc.code, exc.message, every_s=60.0)
        return f"snoozed:{exc.code}"
    except ValidationFailed as exc:
        error = JobError(code=exc.code, message=exc.message)
        finish(cp, job.id, JobStatus.FAILED, reason="refused_by_agent", attempt=attempt, error=error)
        return "refused_by_agent"


def _degraded(cp: ControlPlane, subject: str, component: str, reason: str, message: str, *, every_s: float) -> None:
    """``health.degraded``: at most one per subject and reason every ``every_s`` (deliveries retry every
    snooze; one event says it, not one per retry)."""
    window = int(cp.clock.now() // every_s)
    data = {"component": component, "reason": reason, "message": message[:200]}
    announce(cp, "health.degraded", subject, data, source="dispatch", occurrence=f"{reason}@{window}")


def _confirm(cp: ControlPlane, job_id: str, attempt: int, accepted: AgentJobAccepted) -> Job | None:
    """Mark the handed-over attempt running (unless a report already did, or the job moved on)."""

    def confirm(current: Job) -> Job | None:
        if current.attempt != attempt or not (current.status is JobStatus.RUNNING or _reserved(current)):
            return None
        if current.status is not JobStatus.RUNNING:
            current.status = JobStatus.RUNNING
            current.status_reason = "handed_to_agent"
        current.attempt = accepted.attempt  # the agent may already run an earlier attempt: follow that one
        return current

    return cp.store.modify(job_id, confirm)


def _reserved(job: Job) -> bool:
    return job.status is JobStatus.STARTING and job.status_reason == HANDING_OVER


def _unreserve(cp: ControlPlane, job_id: str, attempt: int, *, keep_attempt: bool) -> None:
    def mutate(current: Job) -> Job | None:
        # Only while the agent has not reported this attempt (its first report makes the job running).
        if not _reserved(current) or current.attempt != attempt:
            return None
        current.attempt = attempt if keep_attempt else attempt - 1
        current.lease_expires_at = None
        return current

    cp.store.modify(job_id, mutate)
