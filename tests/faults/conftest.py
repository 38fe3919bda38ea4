"""Fault-injection scenarios: each runs a batch of jobs through a fresh local stack with one fault.

Every scenario ends with the same audit (see :class:`Audit`) and a one-line summary printed at the
end of the run: jobs, lost, duplicated, instances left.
"""

from __future__ import annotations

import contextlib
import os
import signal
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from shared.fakes.ollama import prompt_key
from shared.tools.client import JobsClient
from shared.tools.devstack import DevStack
from shared.tools.receiver import CallbackReceiver
from tests.servers import MODEL, start_stack, wait_until

SUMMARIES: list[str] = []


@dataclass
class Audit:
    """What a scenario submitted, and the checks every scenario must pass at the end."""

    name: str
    stack: DevStack
    client: JobsClient
    receiver: CallbackReceiver
    jobs: dict[str, str] = field(default_factory=dict)  # job id → prompt
    started: float = field(default_factory=time.monotonic)

    def submit(self, **fields: Any) -> str:
        prompt = fields.pop("prompt", f"{self.name} {uuid.uuid4().hex[:8]}")
        body = {
            "model": MODEL,
            "prompt": prompt,
            "callback_url": self.receiver.url,
            "callback_events": ["completed"],
            **fields,
        }
        job = self.client.submit(body)
        self.jobs[job["id"]] = prompt
        return str(job["id"])

    def generations(self) -> dict[str, int]:
        stats = httpx.get(self.stack.ollama_url + "/__fake__/stats", timeout=10).json()
        return {job_id: int(stats["generations_by_prompt"].get(prompt_key(p), 0)) for job_id, p in self.jobs.items()}

    def running_boxes(self) -> list[str]:
        return [box for box, state, _ in self.stack.boxes() if state != "stopped"]

    def finish(self, expected: dict[str, str] | None = None, timeout_s: float = 90) -> dict[str, dict[str, Any]]:
        """Wait for every job to end, then check: right status, one callback per job, no double
        generation per attempt, no box left running. Records the summary line."""
        terminal = ("succeeded", "failed", "cancelled", "expired")
        final: dict[str, dict[str, Any]] = {}

        def all_done() -> bool:
            for job_id in self.jobs:
                if job_id not in final:
                    job = self.client.get(job_id)
                    if job["status"] in terminal:
                        final[job_id] = job
            return len(final) == len(self.jobs)

        with contextlib.suppress(AssertionError):  # jobs still not terminal are counted as lost below
            wait_until(all_done, timeout_s, f"{self.name}: every job terminal", poll_s=0.2)
        lost = [j for j in self.jobs if j not in final or final[j]["status"] != (expected or {}).get(j, "succeeded")]
        self.receiver.wait_for(lambda evs: set(final) <= {e.data["id"] for e in evs}, timeout=60)
        per_job: dict[str, set[str]] = {}
        for event in self.receiver.events:
            per_job.setdefault(event.data["id"], set()).add(event.webhook_id)
        generations = self.generations()
        duplicated = [j for j in final if generations[j] > max(1, final[j]["attempts"]) or len(per_job.get(j, ())) != 1]
        wait_until(lambda: not self.running_boxes(), 60, f"{self.name}: every box stopped", poll_s=0.2)
        left = self.running_boxes()
        SUMMARIES.append(
            f"{self.name}: jobs={len(self.jobs)} lost={len(lost)} duplicated={len(duplicated)} "
            f"instances_left={len(left)} ({time.monotonic() - self.started:.1f}s)"
        )
        assert lost == [], {j: final.get(j, {}).get("status") for j in lost}
        assert duplicated == [], {j: (generations[j], final[j]["attempts"], per_job.get(j)) for j in duplicated}
        assert left == []
        return final


@pytest.fixture
def scenario(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[Callable[..., Audit]]:
    """``scenario(name, **stack overrides)`` → a fresh stack with a receiver and an audit."""
    made: list[tuple[DevStack, JobsClient, CallbackReceiver]] = []

    def make(name: str, **overrides: Any) -> Audit:
        settings = {"lease_s": 2.0, "callback_backoff_s": 0.2, **overrides.pop("settings", {})}
        stack = start_stack(
            tmp_path / name, idle_grace_s=overrides.pop("idle_grace_s", 1.5), overrides=settings, **overrides
        )
        client = JobsClient(stack.url, stack.api_key)
        receiver = CallbackReceiver(stack.settings.webhook_secret).start()
        made.append((stack, client, receiver))
        return Audit(name, stack, client, receiver)

    yield make
    for stack, client, receiver in made:
        client.close()
        receiver.stop()
        stack.stop()


def kill_agent(stack: DevStack, instance_id: str = "local-1") -> int:
    """SIGKILL the box's agent process group, as a vanished rented machine would."""
    import json

    record = json.loads((stack.data_dir / "instances" / f"{instance_id}.json").read_text())
    os.killpg(record["pid"], signal.SIGKILL)
    return int(record["pid"])


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if SUMMARIES:
        terminalreporter.section("fault scenarios")
        for line in SUMMARIES:
            terminalreporter.line(line)
