"""reaper's core, run on a schedule: stop idle or leaked boxes, re-drive or expire stuck jobs.

It is the backstop for everything the agent and dispatch normally do themselves, so each check
here must hold even if the agent died without a word.
"""

from __future__ import annotations

import logging
from typing import Any

from shared.controlplane import ControlPlane
from shared.instances import instance_record
from shared.lifecycle import finish, push_dispatch
from shared.models import InstanceState, Job, JobError
from shared.states import JobStatus

__all__ = ["reap"]

log = logging.getLogger("gpuq.reaper")


def _redrive(cp: ControlPlane, job: Job, now: float) -> str:
    if job.attempt >= job.max_attempts:
        finish(cp, job.id, JobStatus.FAILED, reason="agent_lost", attempt=job.attempt,
               error=JobError(code="agent_lost", message=f"the agent stopped reporting; {job.attempt} attempts"))
        return "failed"
    seq = job.dispatch_seq + 1
    push_dispatch(cp, job.id, seq)

    def mutate(current: Job) -> Job | None:
        if current.status is not JobStatus.RUNNING or current.attempt != job.attempt:
            return None
        if current.lease_expires_at is None or current.lease_expires_at > now:
            return None
        current.status = JobStatus.QUEUED
        current.status_reason = "retrying_after_agent_failure"
        current.dispatch_seq = seq
        current.lease_expires_at = None
        return current

    cp.store.modify(job.id, mutate)
    return "redriven"


def reap(cp: ControlPlane) -> dict[str, Any]:
    now = cp.clock.now()
    counts = {"expired": 0, "redriven": 0, "failed": 0, "timed_out": 0, "stopped": 0}
    waiting = cp.store.list_by_status([JobStatus.QUEUED, JobStatus.STARTING])
    for job in waiting:
        if now - job.queued_at > job.max_queue_s:
            finish(cp, job.id, JobStatus.EXPIRED, reason="max_queue_s_exceeded",
                   error=JobError(code="expired", message=f"no GPU within max_queue_s={job.max_queue_s:g}s"))
            counts["expired"] += 1
    running = cp.store.list_by_status([JobStatus.RUNNING])
    for job in running:
        started = job.started_at or job.queued_at
        if now - started > job.timeout_s + cp.settings.lease_s:
            finish(cp, job.id, JobStatus.FAILED, reason="timeout", attempt=job.attempt,
                   error=JobError(code="timeout", message=f"ran longer than timeout_s={job.timeout_s:g}s"))
            counts["timed_out"] += 1
        elif job.lease_expires_at is not None and job.lease_expires_at < now:
            counts[_redrive(cp, job, now)] += 1

    busy = bool(running) or bool(waiting)
    instance_id = cp.settings.instance_id
    instance = cp.run(cp.provider.get(instance_id))
    if instance is not None and instance.state is InstanceState.RUNNING and not busy:
        record = instance_record(cp, instance_id)
        last = record.get("last_activity_at") or instance.started_at or now
        if now - last > cp.settings.reaper_idle_limit_s:
            log.warning("instance %s idle for %.0fs and still running: the reaper stops it", instance_id, now - last)
            cp.run(cp.provider.stop(instance_id))
            counts["stopped"] += 1
    if any(counts.values()):
        log.info("reaper: %s", counts)
    return counts
