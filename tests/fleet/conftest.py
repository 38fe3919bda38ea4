"""Fleet stacks: the whole local stack with a pool of several boxes (each test its own stack and data dir)."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from shared.tools.client import JobsClient
from shared.tools.devstack import DevStack
from tests.servers import MODEL, start_stack

StackFactory = Callable[..., DevStack]

VAST_POOLS = f"""
[pools.vast]
provider = "vast"
models = ["{MODEL}"]
max_boxes = 2
jobs_per_box = 1
idle_policy = "fixed"
idle_grace_s = 1.0
cold_start_s = 2.0
"""
"""A pool of two Vast boxes, one job at a time each, stopping after a second idle."""


@pytest.fixture
def fleet_stack(tmp_path: Path) -> Iterator[StackFactory]:
    """``fleet_stack(max_boxes=3, …)`` starts a stack (DevStackConfig fields) that is stopped after the test."""
    started: list[DevStack] = []

    def start(**overrides: Any) -> DevStack:
        stack = start_stack(tmp_path / f"stack{len(started)}", **overrides)
        started.append(stack)
        return stack

    yield start
    for stack in started:
        stack.stop()


def stand_in_stats(stack: DevStack) -> dict[str, Any]:
    """What the Ollama stand-in counted: generations per prompt, per path."""
    body: dict[str, Any] = httpx.get(f"{stack.ollama_url}/__fake__/stats", timeout=10).json()
    return body


def box_pid(stack: DevStack, box_id: str) -> int:
    """The agent process of a local box (its provider's state file)."""
    record = json.loads((stack.data_dir / "instances" / f"{box_id}.json").read_text())
    return int(record["pid"])


def up_boxes(stack: DevStack) -> set[str]:
    return {box for box, state, _ in stack.boxes() if state != "stopped"}


def client_for(stack: DevStack) -> JobsClient:
    return JobsClient(stack.url, stack.api_key)
