"""Apply an agent's progress report: store chunks, renew the lease, finish the job.

Fenced by attempt: the report's token is scoped to one attempt, and a report for any attempt other
than the job's current one changes nothing and tells the agent to stop. A box sends the reports of all
its jobs in one batch (:func:`apply_reports`); each entry is checked and applied on its own.
"""

from __future__ import annotations

import logging

from shared.boxes.rates import learn_rates
from shared.boxes.registry import heartbeat
from shared.controlplane import ControlPlane
from shared.errors import ClientError, NotFound, Unauthorized
from shared.jobs.callbacks import schedule_callback
from shared.jobs.events import Report, ReportAck, ReportBatch, ReportBatchAck, ReportEntryAck
from shared.jobs.lifecycle import finish, redrive
from shared.models import Job, JobError
from shared.observability.events import announce
from shared.security.signing import verify_job_token
from shared.states import JobStatus
from shared.store.base import Chunk

__all__ = ["apply_report", "apply_reports"]

log = logging.getLogger("gpuq.reports")

OUTPUT_CALLBACK_EVERY_S = 1.0

_FINAL_STATUS = {"succeeded": JobStatus.SUCCEEDED, "failed": JobStatus.FAILED, "cancelled": JobStatus.CANCELLED}


def apply_report(
    cp: ControlPlane, job_id: str, token: str, report: Report, *, boxes: set[str] | None = None
) -> ReportAck:
    """Apply one job's report. ``boxes`` collects the boxes that reported (their heartbeat), when given."""
    attempt = verify_job_token(cp.settings.job_token_secret, job_id, token)
    if attempt != report.attempt:
        raise Unauthorized("token and report are for different attempts", code="invalid_job_token")
    job = cp.store.get(job_id)
    if job is None:
        raise NotFound(f"no job {job_id!r}", code="job_not_found")
    if job.attempt != attempt or not _current(job):
        return ReportAck(status=job.status, cancel=True)

    if report.chunks:
        cp.store.append_chunks(job_id, (Chunk(attempt, c.seq, c.text) for c in report.chunks))
    updated = _apply_progress(cp, job_id, attempt, report)
    if updated.instance_id:
        (boxes if boxes is not None else set()).add(updated.instance_id)
        if boxes is None:
            heartbeat(cp, updated.instance_id)
    if report.outcome == "cancelled":
        return _lost_attempt(cp, job_id, attempt)
    if report.outcome is not None:
        return _finish_attempt(cp, updated, attempt, report)
    return ReportAck(status=updated.status, cancel=updated.status is not JobStatus.RUNNING)


def _apply_progress(cp: ControlPlane, job_id: str, attempt: int, report: Report) -> Job:
    """Renew the lease, note the start, keep the result; then queue the callbacks those changes call for."""
    now = cp.clock.now()
    events: list[tuple[str, str, str]] = []

    def mutate(current: Job) -> Job | None:
        events.clear()
        if current.attempt != attempt or not _current(current):
            return None
        current.status = JobStatus.RUNNING  # a report can beat dispatch's own confirmation of the handover
        current.lease_expires_at = now + cp.settings.lease_s
        if report.started and current.started_at is None:
            current.started_at = now
            current.status_reason = "generating"
            events.append(("started", "job.started", ""))
        if report.status_reason:  # e.g. pulling the model first: the job says so until output comes
            current.status_reason = report.status_reason
        elif report.chunks and (current.status_reason or "").startswith("pulling_model"):
            current.status_reason = "generating"
        if report.chunks and (
            current.callback.last_output_at is None or now - current.callback.last_output_at >= OUTPUT_CALLBACK_EVERY_S
        ):
            current.callback.last_output_at = now
            events.append(("output", "job.output", f".{report.chunks[-1].seq}"))
        if report.result is not None:
            current.result = report.result
        return current

    updated = cp.store.modify(job_id, mutate)
    assert updated is not None
    if updated.attempt == attempt and _current(updated):
        _announce_progress(cp, updated, report)
    for subscription, event_type, suffix in events:
        schedule_callback(cp, updated, subscription, event_type, suffix)
    return updated


def _announce_progress(cp: ControlPlane, job: Job, report: Report) -> None:
    """``job.started`` with the attempt's first report, ``job.output`` with its first chunk (seq 0): once per
    attempt each, never per chunk (a resent report's events are refused by the store, one write each)."""
    attempt = str(report.attempt)
    common = {"attempt": report.attempt, "instance_id": job.instance_id}
    if report.started:
        wait = round(job.handed_at - job.queued_at, 3) if job.handed_at else None
        announce(cp, "job.started", job.id, {**common, "queue_wait_s": wait}, source="reports", occurrence=attempt)
    if report.chunks and report.chunks[0].seq == 0:
        first = round(cp.clock.now() - job.queued_at, 3)
        data = {**common, "time_to_first_output_s": first}
        announce(cp, "job.output", job.id, data, source="reports", occurrence=attempt)


def _lost_attempt(
    cp: ControlPlane, job_id: str, attempt: int, *, reason: str = "retrying_after_agent_failure", delay_s: float = 0
) -> ReportAck:
    """The agent stopped this attempt. It stops only when told to (a cancelled job, a fenced attempt); a job
    still running here was not cancelled by anyone, so this attempt is lost, not the job: run it again."""
    job_now = cp.store.get(job_id)
    if job_now is not None and job_now.status is JobStatus.RUNNING and job_now.attempt == attempt:
        redrive(cp, job_now, reason=reason, force=True, delay_s=delay_s)
    return ReportAck(status=job_now.status if job_now else JobStatus.CANCELLED, cancel=True)


def _finish_attempt(cp: ControlPlane, updated: Job, attempt: int, report: Report) -> ReportAck:
    """The agent's final word on this attempt: the job's terminal status, its output offloaded when large."""
    assert report.outcome is not None
    retry = report.outcome == "failed" and report.error is not None and report.error.is_retryable()
    if retry and report.error is not None and updated.attempt < updated.max_attempts:
        delay_s = cp.settings.model_server_retry_s * 2 ** (attempt - 1)  # the server's restart has time to finish
        return _lost_attempt(cp, updated.id, attempt, reason=f"retrying_after_{report.error.code}", delay_s=delay_s)
    status = _FINAL_STATUS[report.outcome]
    error = report.error if status is not JobStatus.SUCCEEDED else None
    reason = None if status is JobStatus.SUCCEEDED else (error.code if error else report.outcome)
    finished = finish(cp, updated.id, status, reason=reason, error=error or _default_error(status), attempt=attempt)
    pool = cp.pools.of_box(updated.instance_id or "") or cp.pools.for_model(updated.model)
    if pool is not None and finished is not None and finished.status is JobStatus.SUCCEEDED:
        learn_rates(cp, pool.name, finished)
    assert finished is not None
    if cp.blobs is not None and finished.attempt == attempt and finished.status.is_terminal():
        _offload_output(cp, updated.id, attempt)
    return ReportAck(status=finished.status)


def apply_reports(cp: ControlPlane, batch: ReportBatch) -> ReportBatchAck:
    """Apply each entry on its own: one refused entry (bad token, unknown job) does not hold up the others.

    Raises :class:`Unauthorized` when no entry carries a valid token: a caller with no job of ours gets
    a plain 401. A server-side failure propagates: the agent resends the whole batch,
    and a resent report changes nothing twice (chunks are keyed by attempt and seq).
    """
    acks: list[ReportEntryAck] = []
    unauthorized: list[Unauthorized] = []
    boxes: set[str] = set()
    for entry in batch.reports:
        try:
            ack = apply_report(cp, entry.job_id, entry.token, entry.report, boxes=boxes)
        except ClientError as exc:
            if isinstance(exc, Unauthorized):
                unauthorized.append(exc)
            acks.append(
                ReportEntryAck(job_id=entry.job_id, cancel=True, error=JobError(code=exc.code, message=exc.message))
            )
            continue
        acks.append(ReportEntryAck(job_id=entry.job_id, status=ack.status, cancel=ack.cancel))
    if len(unauthorized) == len(acks):
        raise unauthorized[-1]
    for box_id in boxes:  # the batch is its box's heartbeat
        heartbeat(cp, box_id)
    return ReportBatchAck(acks=acks)


def _offload_output(cp: ControlPlane, job_id: str, attempt: int) -> None:
    """A large finished output goes to the bucket, so readers do not pull thousands of chunks every time."""
    assert cp.blobs is not None
    text = "".join(chunk.text for chunk in cp.store.read_chunks(job_id, attempt))
    ref = cp.blobs.offload(job_id, attempt, text)
    if ref is None:
        return

    def mutate(current: Job) -> Job | None:
        if current.attempt != attempt or current.output_ref is not None:
            return None
        current.output_ref = ref
        return current

    cp.store.modify(job_id, mutate)


def _current(job: Job) -> bool:
    """Running, or being handed over (the attempt is reserved and the agent may report before dispatch confirms)."""
    return job.status is JobStatus.RUNNING or (job.status is JobStatus.STARTING and job.status_reason == "handing_over")


def _default_error(status: JobStatus) -> JobError | None:
    if status is JobStatus.FAILED:
        return JobError(code="agent_error", message="the agent reported a failure without detail")
    return None
