"""The sample job the store contract tests create, and the status moves they make on it."""

from __future__ import annotations

from collections.abc import Callable

from shared.models import Job
from shared.states import JobStatus, check_transition

__all__ = ["make_job", "move"]


def make_job(job_id: str = "job_1", **fields: object) -> Job:
    base: dict[str, object] = {
        "id": job_id,
        "owner": "alice",
        "model": "m",
        "prompt": "p",
        "max_queue_s": 60,
        "timeout_s": 60,
        "queued_at": 1000.0,
    }
    base.update(fields)
    return Job.model_validate(base)


def move(target: JobStatus, **extra: object) -> Callable[[Job], Job]:
    def mutate(job: Job) -> Job:
        check_transition(job.status, target)
        job.status = target
        for name, value in extra.items():
            setattr(job, name, value)
        return job

    return mutate
