"""Follow a job from the store until it is done: what a held OpenAI request waits on.

:func:`follow` yields a :class:`Step` for each thing a client could be told: the job still waits
(with its status and reason, and how long it has waited), a piece of output, a restart of the output
(a new attempt), and the end. It reads the store only, so any functions instance can follow any job;
it polls fast at first and while tokens flow, slowly while a box starts.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Literal

from shared.controlplane import ControlPlane
from shared.models import Job

__all__ = ["FAST_POLL_S", "SLOW_POLL_S", "Step", "follow", "waiting_line"]

SLOW_POLL_S = 0.25  # waiting for a box: nothing to stream, the store is read four times a second
FAST_POLL_S = 0.02  # generating: as the jobs API's own stream
EAGER_S = 1.0  # fast at first too: on a warm box the job is running within tens of milliseconds


@dataclass(frozen=True, slots=True)
class Step:
    kind: Literal["waiting", "text", "reset", "done"]
    job: Job
    text: str = ""


def follow(cp: ControlPlane, job: Job, *, deadline: float) -> Iterator[Step]:
    """Steps until the job is terminal (the last is ``done``) or ``deadline`` (``time.monotonic``) passes."""
    attempt, after = 0, -1
    eager_until = time.monotonic() + EAGER_S
    while True:
        current = cp.store.get(job.id) or job
        if current.attempt and current.attempt != attempt:
            if attempt:
                yield Step("reset", current)
            attempt, after = current.attempt, -1
        for chunk in cp.store.read_chunks(job.id, attempt, after) if attempt else ():
            yield Step("text", current, chunk.text)
            after = chunk.seq
        if current.status.is_terminal():
            yield Step("done", current)
            return
        if after < 0:
            yield Step("waiting", current)
        if time.monotonic() >= deadline:
            return
        fast = after >= 0 or _soon(current) or time.monotonic() < eager_until
        time.sleep(FAST_POLL_S if fast else SLOW_POLL_S)


def _soon(job: Job) -> bool:
    """Output is about to come: the job is running or being handed to a ready box."""
    return job.status.value == "running" or job.status_reason in ("handing_over", "handed_to_agent", "generating")


def waiting_line(job: Job, now: float) -> str:
    """``provisioning_instance 42s``: why the job waits, and for how long."""
    reason = job.status_reason or job.status.value
    return f"{reason} {max(0.0, now - job.queued_at):.0f}s"
