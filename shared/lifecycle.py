"""Moves of a job that several entry points share: snooze, run now, finish, expire.

Each move is one conditional write (``store.modify``) checked against the state machine, plus at
most one queue task. Task first, then the write: if the process dies in between, the new task
finds a ``dispatch_seq`` it does not match and drops itself, while the old task is still current
and is redelivered by the queue (it never got its 2xx).
"""

from __future__ import annotations

import logging

from shared.callbacks import event_id_for, schedule_callback
from shared.controlplane import ControlPlane
from shared.errors import InvalidTransition
from shared.events import callback_event_type
from shared.models import Job, JobError
from shared.states import JobStatus, check_transition

__all__ = ["finish", "push_dispatch", "redispatch_now", "snooze"]

log = logging.getLogger("gpuq.lifecycle")


def push_dispatch(cp: ControlPlane, job_id: str, seq: int, *, delay_s: float = 0.0) -> None:
    cp.queue.push(cp.settings.job_queue, {"kind": "job", "job_id": job_id, "seq": seq}, delay_s=delay_s)


def snooze(cp: ControlPlane, job: Job, seq: int, *, reason: str, delay_s: float) -> Job | None:
    """Re-schedule this job's dispatch in ``delay_s`` and say why it waits."""
    push_dispatch(cp, job.id, seq + 1, delay_s=delay_s)

    def mutate(current: Job) -> Job | None:
        if current.dispatch_seq != seq or not current.status.is_waiting():
            return None
        current.dispatch_seq = seq + 1
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

    def mutate(current: Job) -> Job | None:
        if current.dispatch_seq != seq or not current.status.is_waiting():
            return None
        current.dispatch_seq = seq + 1
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
        if current.callback_url and "completed" in current.callback_events:
            current.callback.pending.append(event_id_for(current, callback_event_type(status)))
        moved = True
        return current

    job = cp.store.modify(job_id, mutate)
    if job is not None and moved:
        log.info("job %s %s (%s)", job_id, status.value, reason or "ok")
        schedule_callback(cp, job, "completed", callback_event_type(status))
    return job
