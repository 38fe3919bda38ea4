"""The agent's state, kept in typed AppKeys: readiness, running jobs, idle time."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from enum import StrEnum

from agent.runner import JobRun

__all__ = ["AgentState", "Phase"]


MAX_FINISHED = 2000


class Phase(StrEnum):
    STARTING = "starting_instance"
    LOADING_MODEL = "loading_model"
    READY = "ready"
    STOPPING = "instance_stopping"
    FAILED = "model_server_unavailable"


@dataclass
class AgentState:
    phase: Phase = Phase.STARTING
    detail: str = ""
    runs: dict[str, JobRun] = field(default_factory=dict)  # running, and the last MAX_FINISHED finished
    idle_since: float = field(default_factory=time.monotonic)
    activity: asyncio.Event = field(default_factory=asyncio.Event)
    jobs_done: int = 0
    running: int = 0  # admitted and not finished (generating, or its outcome not yet accepted)
    generating: int = 0  # what the model server is working on: the limit on new jobs

    def active(self) -> int:
        return self.running

    def admitted(self, run: JobRun) -> None:
        self.runs[run.spec.job_id] = run
        self.running += 1
        self.generating += 1
        run.on_ended = self._ended

    def _ended(self) -> None:
        self.generating -= 1

    def finished(self, run: JobRun) -> None:
        """Count it done; forget the oldest finished runs beyond MAX_FINISHED (kept to answer duplicates)."""
        self.running -= 1
        self.jobs_done += 1
        if len(self.runs) > MAX_FINISHED + self.running:
            for job_id in [j for j, r in self.runs.items() if r.done.is_set()][: len(self.runs) // 4]:
                del self.runs[job_id]

    def idle_s(self) -> float:
        return 0.0 if self.active() else time.monotonic() - self.idle_since
