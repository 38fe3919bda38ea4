"""The agent's state, kept in typed AppKeys: readiness, running jobs, idle time."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from enum import StrEnum

from agent.runner import JobRun

__all__ = ["AgentState", "Phase"]


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
    runs: dict[str, JobRun] = field(default_factory=dict)
    idle_since: float = field(default_factory=time.monotonic)
    activity: asyncio.Event = field(default_factory=asyncio.Event)
    jobs_done: int = 0

    def active(self) -> int:
        return sum(1 for run in self.runs.values() if not run.done.is_set())

    def idle_s(self) -> float:
        return 0.0 if self.active() else time.monotonic() - self.idle_since
