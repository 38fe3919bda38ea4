"""dispatch's core: one queue delivery for one job. Returns in seconds, never waits for a generation.

Box not up → start it and snooze. Box up → hand the job to the agent (idempotent by job id on the
agent) and mark it running. Stale or duplicate deliveries are acknowledged and dropped.
"""

from __future__ import annotations

import logging

from shared.controlplane import ControlPlane
from shared.errors import AgentUnreachable, ProviderError, TryLater, ValidationFailed
from shared.handover import cancel_on_agent, hand_over
from shared.instances import note_activity, note_start_requested
from shared.lifecycle import finish, snooze
from shared.models import InstanceState, Job, JobError
from shared.states import JobStatus

__all__ = ["dispatch_job"]

log = logging.getLogger("gpuq.dispatch")


def dispatch_job(cp: ControlPlane, job_id: str, seq: int) -> str:
    """Handle one dispatch task. Returns a short outcome word for the log and the HTTP answer."""
    job = cp.store.get(job_id)
    if job is None:
        return "unknown_job"
    if job.status.is_terminal():
        return "already_finished"
    if job.status is JobStatus.RUNNING:
        return "already_running"
    if seq != job.dispatch_seq:
        return "stale_task"
    now = cp.clock.now()
    if now - job.queued_at > job.max_queue_s:
        finish(cp, job_id, JobStatus.EXPIRED, reason="max_queue_s_exceeded",
               error=JobError(code="expired", message=f"no GPU within max_queue_s={job.max_queue_s:g}s"))
        return "expired"

    settings = cp.settings
    try:
        instance = cp.run(cp.provider.get(settings.instance_id))
        if instance is None or instance.state in (InstanceState.STOPPED, InstanceState.GONE):
            instance = cp.run(cp.provider.start(settings.instance_id))
            note_start_requested(cp, settings.instance_id)
            log.info("job %s waits: started instance %s", job_id, settings.instance_id)
            raise TryLater("instance starting", delay_s=settings.snooze_s, reason="provisioning_instance")
        if instance.state is InstanceState.STOPPING:
            raise TryLater("instance stopping", delay_s=settings.snooze_s, reason="instance_stopping")
        if not instance.agent_url:
            raise TryLater("agent not reachable yet", delay_s=settings.snooze_s, reason="starting_instance")
        accepted = hand_over(cp, job, instance)
    except TryLater as wait:
        snooze(cp, job, seq, reason=wait.reason, delay_s=wait.delay_s)
        return f"snoozed:{wait.reason}"
    except (ProviderError, AgentUnreachable) as exc:
        log.warning("job %s: %s; retrying in %.0fs", job_id, exc.message, settings.snooze_s)
        snooze(cp, job, seq, reason=exc.code, delay_s=settings.snooze_s)
        return f"snoozed:{exc.code}"
    except ValidationFailed as exc:
        finish(cp, job_id, JobStatus.FAILED, reason="refused_by_agent",
               error=JobError(code=exc.code, message=exc.message))
        return "refused_by_agent"

    def mutate(current: Job) -> Job | None:
        if not current.status.is_waiting():
            return None
        current.status = JobStatus.RUNNING
        current.status_reason = "handed_to_agent"
        current.attempt = accepted.attempt
        current.instance_id = instance.id
        current.lease_expires_at = now + settings.lease_s
        return current

    updated = cp.store.modify(job_id, mutate)
    if updated is not None and updated.status.is_terminal():
        cancel_on_agent(cp, updated.model_copy(update={"instance_id": instance.id}))
        return "cancelled_meanwhile"
    note_activity(cp, instance.id)
    log.info("job %s handed to %s (attempt %d%s)", job_id, instance.id, accepted.attempt,
             ", duplicate" if accepted.duplicate else "")
    return "handed_over"
