"""The job state machine: which status may follow which.

::

    queued ──▶ starting ──▶ running ──▶ succeeded
      │  ▲        │  ▲          │ └────▶ failed
      │  └────────┘  └──────────┤        (timeout, agent error, attempts exhausted)
      │    (box stopped under   └──▶ queued (re-driven after an agent failure)
      │     a waiting job)
      └──▶ expired (waited longer than max_queue_s)   any non-terminal ──▶ cancelled | failed

Every write to a job goes through :func:`check_transition`, so a duplicate or late event
can never move a job backwards or out of a terminal status.
"""

from __future__ import annotations

from enum import StrEnum

from shared.errors import InvalidTransition

__all__ = ["ALLOWED", "JobStatus", "check_transition"]


class JobStatus(StrEnum):
    QUEUED = "queued"
    STARTING = "starting"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"
    EXPIRED = "expired"

    def is_terminal(self) -> bool:
        return self in _TERMINAL

    def is_waiting(self) -> bool:
        """Accepted but not yet handed to an agent."""
        return self in (JobStatus.QUEUED, JobStatus.STARTING)


_TERMINAL = frozenset({JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.CANCELLED, JobStatus.EXPIRED})

ALLOWED: dict[JobStatus, frozenset[JobStatus]] = {
    JobStatus.QUEUED: frozenset(
        {JobStatus.STARTING, JobStatus.RUNNING, JobStatus.CANCELLED, JobStatus.EXPIRED, JobStatus.FAILED}
    ),
    JobStatus.STARTING: frozenset(
        {
            JobStatus.STARTING,
            JobStatus.QUEUED,
            JobStatus.RUNNING,
            JobStatus.CANCELLED,
            JobStatus.EXPIRED,
            JobStatus.FAILED,
        }
    ),
    JobStatus.RUNNING: frozenset(
        {JobStatus.RUNNING, JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.CANCELLED, JobStatus.QUEUED}
    ),
    JobStatus.SUCCEEDED: frozenset(),
    JobStatus.FAILED: frozenset(),
    JobStatus.CANCELLED: frozenset(),
    JobStatus.EXPIRED: frozenset(),
}


def check_transition(current: JobStatus, target: JobStatus) -> None:
    """Raise :class:`InvalidTransition` unless ``current → target`` is allowed."""
    if target not in ALLOWED[current]:
        raise InvalidTransition(f"a {current.value} job cannot become {target.value}")
