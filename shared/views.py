"""Read-side helpers: a job's output as clients see it."""

from __future__ import annotations

from shared.controlplane import ControlPlane
from shared.models import Job

__all__ = ["job_output"]


def job_output(cp: ControlPlane, job: Job) -> str | None:
    """Output of the job's current attempt (partial while running), ``None`` before any."""
    if job.attempt == 0:
        return None
    return "".join(chunk.text for chunk in cp.store.read_chunks(job.id, job.attempt))
