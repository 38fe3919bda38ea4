"""dispatch's core: one queue delivery for one job. Returns in seconds, never waits for a generation.

Box not up → start it and snooze. Box up → hand the job to the agent (idempotent by job id on the
agent) and mark it running. Stale or duplicate deliveries are acknowledged and dropped.
"""

from __future__ import annotations

import logging

from shared.boxes.instances import note_handover, start_box
from shared.controlplane import ControlPlane
from shared.errors import AgentUnreachable, ProviderError, TryLater, ValidationFailed
from shared.jobs.events import AgentJobAccepted
from shared.jobs.handover import cancel_on_agent, hand_over
from shared.jobs.lifecycle import finish, push_lease_check, snooze
from shared.models import Instance, InstanceState, Job, JobError
from shared.money.budget import budget_exceeded, check_budget
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
    instance = _box_or_snooze(cp, job, seq)
    if isinstance(instance, str):
        return instance
    reserved = _reserve(cp, job, seq, instance, now)
    if reserved is None:
        return "raced"
    accepted = _hand_over_or_back_off(cp, job, seq, reserved, instance)
    if isinstance(accepted, str):
        return accepted
    confirmed = _confirm(cp, job_id, reserved.attempt, accepted)
    if confirmed is not None and confirmed.status.is_terminal():
        cancel_on_agent(cp, confirmed)  # cancelled while being handed over
        return "cancelled_meanwhile"
    push_lease_check(cp, job_id, accepted.attempt, delay_s=cp.settings.lease_s + 0.5)
    note_handover(cp, instance, job_id)
    log.info(
        "job %s handed to %s (attempt %d%s)",
        job_id,
        instance.id,
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


def _box_or_snooze(cp: ControlPlane, job: Job, seq: int) -> Instance | str:
    """The box to hand the job to, or the outcome of snoozing the job until there is one."""
    settings = cp.settings
    if budget_exceeded(cp):  # the queue is paused too; this catches deliveries already in flight
        snooze(cp, job, seq, reason="budget_exceeded", delay_s=max(settings.snooze_s, 30.0))
        return "snoozed:budget_exceeded"
    try:
        return _ready_box(cp, job.id)
    except TryLater as wait:
        snooze(cp, job, seq, reason=wait.reason, delay_s=wait.delay_s)
        return f"snoozed:{wait.reason}"
    except ProviderError as exc:
        log.warning("job %s: %s; retrying in %.0fs", job.id, exc.message, settings.snooze_s)
        snooze(cp, job, seq, reason=exc.code, delay_s=settings.snooze_s)
        return f"snoozed:{exc.code}"


def _reserve(cp: ControlPlane, job: Job, seq: int, instance: Instance, now: float) -> Job | None:
    """Take the job's next attempt for this delivery; None when another delivery moved the job first.

    Reserved before the agent hears of it, so its first report always finds the job with that attempt
    (the fencing token), whichever arrives first. Clients see "starting · handing_over".
    """
    attempt = job.attempt + 1
    lease_s = cp.settings.lease_s

    def reserve(current: Job) -> Job | None:
        if not current.status.is_waiting() or current.dispatch_seq != seq:
            return None
        current.status = JobStatus.STARTING
        current.status_reason = HANDING_OVER
        current.attempt = attempt
        current.instance_id = instance.id
        current.handed_at = now
        current.lease_expires_at = now + lease_s
        return current

    reserved = cp.store.modify(job.id, reserve)
    if reserved is None or reserved.status_reason != HANDING_OVER or reserved.attempt != attempt:
        return None
    return reserved


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
        return f"snoozed:{exc.code}"
    except ValidationFailed as exc:
        error = JobError(code=exc.code, message=exc.message)
        finish(cp, job.id, JobStatus.FAILED, reason="refused_by_agent", attempt=attempt, error=error)
        return "refused_by_agent"


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


def _ready_box(cp: ControlPlane, job_id: str) -> Instance:
    """The box with a reachable agent URL, or :class:`TryLater` saying why not yet (starting it if stopped)."""
    settings = cp.settings
    instance = cp.run(cp.provider.get(settings.instance_id))
    if instance is None or instance.state in (InstanceState.STOPPED, InstanceState.GONE):
        if check_budget(cp).get("budget_exceeded"):  # measured now: never start a box past the cap
            raise TryLater("over budget", delay_s=max(settings.snooze_s, 30.0), reason="budget_exceeded")
        start_box(cp, settings.instance_id, instance)
        log.info("job %s waits: started instance %s", job_id, settings.instance_id)
        raise TryLater("instance starting", delay_s=settings.snooze_s, reason="provisioning_instance")
    if instance.state is InstanceState.STOPPING:
        raise TryLater("instance stopping", delay_s=settings.snooze_s, reason="instance_stopping")
    if not instance.agent_url:
        raise TryLater("agent not reachable yet", delay_s=settings.snooze_s, reason="starting_instance")
    return instance


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
