"""Moves of a job that several entry points share: snooze, run now, finish, expire.

Each move is one conditional write (``store.modify``) checked against the state machine, plus at
most one queue task. Task first, then the write: if the process dies in between, the new task
finds a ``dispatch_seq`` it does not match and drops itself, while the old task is still current
and is redelivered by the queue (it never got its 2xx).
"""

from __future__ import annotations

from typing import Any

from shared.boxes.instances import provisional_cost
from shared.boxes.registry import release_slot
from shared.controlplane import ControlPlane
from shared.errors import InvalidTransition
from shared.jobs.callbacks import event_id_for, schedule_callback
from shared.jobs.events import callback_event_type
from shared.jobs.tasks import JobTask, LeaseTask, push_task
from shared.models import Job, JobError
from shared.observability.events import announce
from shared.states import JobStatus, check_transition

__all__ = [
    "announce_end",
    "check_lease",
    "finish",
    "push_dispatch",
    "push_lease_check",
    "redispatch_now",
    "redrive",
    "snooze",
]


def push_dispatch(cp: ControlPlane, job_id: str, seq: int, *, delay_s: float = 0.0) -> None:
    push_task(cp, JobTask(job_id=job_id, seq=seq), delay_s=delay_s)


def snooze(cp: ControlPlane, job: Job, seq: int, *, reason: str, delay_s: float) -> Job | None:
    """Re-schedule this job's dispatch in ``delay_s`` and say why it waits."""
    push_dispatch(cp, job.id, seq + 1, delay_s=delay_s)
    due = cp.clock.now() + delay_s

    def mutate(current: Job) -> Job | None:
        if current.dispatch_seq != seq or not current.status.is_waiting():
            return None
        current.dispatch_seq = seq + 1
        current.next_dispatch_at = due
        current.status = JobStatus.STARTING
        current.status_reason = reason
        return current

    return cp.store.modify(job.id, mutate)


def redispatch_now(cp: ControlPlane, job: Job) -> bool:
    """Make a waiting job's dispatch run now instead of at its snoozed time.

    Works the same on the emulator and the real service: a fresh task with the next sequence
    number; the snoozed one becomes stale and drops itself when it fires. (The emulator's RunTask
    races its own dispatcher thread, which then dies with NotFound and stops the whole queue.)
    """
    seq = job.dispatch_seq
    push_dispatch(cp, job.id, seq + 1)
    now = cp.clock.now()

    def mutate(current: Job) -> Job | None:
        if current.dispatch_seq != seq or not current.status.is_waiting():
            return None
        current.dispatch_seq = seq + 1
        current.next_dispatch_at = now
        return current

    updated = cp.store.modify(job.id, mutate)
    return updated is not None and updated.dispatch_seq == seq + 1


def finish(
    cp: ControlPlane,
    job_id: str,
    status: JobStatus,
    *,
    reason: str | None,
    error: JobError | None = None,
    attempt: int | None = None,
) -> Job | None:
    """Move a job to a terminal status (once) and schedule its ``completed`` callback."""
    assert status.is_terminal()
    now = cp.clock.now()
    moved = False

    def mutate(current: Job) -> Job | None:
        nonlocal moved
        moved = False
        if current.status.is_terminal() or (attempt is not None and current.attempt != attempt):
            return None
        try:
            check_transition(current.status, status)
        except InvalidTransition:
            return None
        current.status = status
        current.status_reason = reason
        current.error = error
        current.finished_at = now
        current.lease_expires_at = None
        if current.cost_usd is None:
            current.cost_usd = provisional_cost(cp, current)
        if current.callback_url and "completed" in current.callback_events:
            current.callback.pending.append(event_id_for(current, callback_event_type(status)))
        moved = True
        return current

    job = cp.store.modify(job_id, mutate)
    if job is not None and moved:
        announce_end(cp, job)
        if job.instance_id:
            release_slot(cp, job.instance_id, job_id)
        schedule_callback(cp, job, "completed", callback_event_type(status))
    elif job is not None and job.status is status and (attempt is None or job.attempt == attempt):
        announce_end(cp, job)  # a re-run of the move (a redelivered report): its event, if it was lost, now
    return job


def announce_end(cp: ControlPlane, job: Job) -> None:
    """The job's terminal event (``job.succeeded``, ``job.failed``…), once per job."""
    data: dict[str, Any] = {
        "reason": job.status_reason or "ok",
        "attempt": job.attempt,
        "instance_id": job.instance_id,
        "error_code": job.error.code if job.error else None,
        "run_s": round(job.finished_at - job.handed_at, 3) if job.finished_at and job.handed_at else None,
        "cost_usd": job.cost_usd,
    }
    announce(cp, f"job.{job.status.value}", job.id, data, source="lifecycle")


def push_lease_check(cp: ControlPlane, job_id: str, attempt: int, *, delay_s: float) -> None:
    push_task(cp, LeaseTask(job_id=job_id, attempt=attempt), delay_s=max(0.0, delay_s))


def redrive(
    cp: ControlPlane, job: Job, *, reason: str = "retrying_after_agent_failure", force: bool = False, delay_s: float = 0
) -> str:
    """A running job whose lease expired (or, with ``force``, whose attempt was lost): next attempt
    through the queue in ``delay_s``, or failed when out of attempts."""
    now = cp.clock.now()
    if job.attempt >= job.max_attempts:
        finish(
            cp,
            job.id,
            JobStatus.FAILED,
            reason="agent_lost",
            attempt=job.attempt,
            error=JobError(
                code="agent_lost", message=f"the agent stopped reporting; gave up after {job.attempt} attempts"
            ),
        )
        return "failed"
    seq = job.dispatch_seq + 1
    push_dispatch(cp, job.id, seq, delay_s=delay_s)

    def mutate(current: Job) -> Job | None:
        if current.status is not JobStatus.RUNNING or current.attempt != job.attempt:
            return None
        if not force and (current.lease_expires_at is None or current.lease_expires_at > now):
            return None
        current.status = JobStatus.QUEUED
        current.status_reason = reason
        current.dispatch_seq = seq
        current.next_dispatch_at = now + delay_s
        current.lease_expires_at = None
        return current

    updated = cp.store.modify(job.id, mutate)
    if updated is not None and updated.dispatch_seq == seq and updated.status is JobStatus.QUEUED:
        data = {"reason": reason, "attempt": job.attempt, "lost_on": job.instance_id, "max_attempts": job.max_attempts}
        announce(cp, "job.queued", job.id, data, source="lifecycle", occurrence=f"after-{job.attempt}")
        if job.instance_id:
            release_slot(cp, job.instance_id, job.id)
        return "redriven"
    return "unchanged"


def check_lease(cp: ControlPlane, job_id: str, attempt: int) -> str:
    """The scheduled lease check of one attempt: re-check later while it is renewed, re-drive when expired."""
    job = cp.store.get(job_id)
    if job is None or job.status is not JobStatus.RUNNING or job.attempt != attempt:
        return "lease_over"
    now = cp.clock.now()
    if job.lease_expires_at is not None and job.lease_expires_at > now:
        push_lease_check(cp, job_id, attempt, delay_s=job.lease_expires_at - now + 0.5)
        return "lease_renewed"
    return redrive(cp, job)
