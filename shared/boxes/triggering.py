"""trigger's core: start the box if work waits; once the agent is ready, run waiting jobs now."""

from __future__ import annotations

import logging
from typing import Any

from shared.boxes.instances import note_ready, start_box
from shared.controlplane import ControlPlane
from shared.jobs.lifecycle import redispatch_now
from shared.models import InstanceState
from shared.states import JobStatus

__all__ = ["trigger"]

log = logging.getLogger("gpuq.trigger")


def trigger(
    cp: ControlPlane, *, ready_instance: str | None = None, phases: dict[str, float] | None = None
) -> dict[str, Any]:
    """An external ping (``ready_instance=None``) or an agent announcing it is ready (with the durations
    of its own start-up ``phases``: ``agent_up_s``, ``model_loaded_s``)."""
    waiting = cp.store.list_by_status([JobStatus.QUEUED, JobStatus.STARTING])
    instance_id = cp.settings.instance_id
    if ready_instance is not None:
        note_ready(cp, ready_instance, phases or {})
        log.info("instance %s ready; %d job(s) waiting", ready_instance, len(waiting))
    if not waiting:
        return {"waiting": 0, "started": False, "dispatched": 0}
    started = False
    instance = cp.run(cp.provider.get(instance_id))
    if instance is None or instance.state in (InstanceState.STOPPED, InstanceState.GONE):
        start_box(cp, instance_id, instance)
        started = True
        log.info("trigger started instance %s for %d waiting job(s)", instance_id, len(waiting))
    dispatched = 0
    if ready_instance is not None or (instance is not None and instance.state is InstanceState.RUNNING):
        dispatched = sum(1 for job in waiting if redispatch_now(cp, job))
    return {"waiting": len(waiting), "started": started, "dispatched": dispatched}
