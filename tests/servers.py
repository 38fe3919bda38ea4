"""Real processes on free ports for the tests: the whole local stack and a callback receiver."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

from shared.tools.devstack import DevStack, DevStackConfig, free_port

__all__ = ["MODEL", "start_stack", "wait_until"]

MODEL = "llama3.2:1b"


def start_stack(data_dir: Path, **overrides: object) -> DevStack:
    config = DevStackConfig(
        port=free_port(),
        data_dir=data_dir,
        idle_grace_s=2.0,
        reaper_period_s=1.0,
        snooze_s=0.3,
        token_delay_s=0.005,
        load_delay_s=0.2,
    )
    for key, value in overrides.items():
        setattr(config, key, value)
    return DevStack(config).start()


def wait_until(predicate: Callable[[], bool], timeout_s: float, what: str, poll_s: float = 0.05) -> None:
    """Poll an observable state of another process (no event to await across processes)."""
    deadline = time.monotonic() + timeout_s
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s:.0f}s waiting for {what}")
        time.sleep(poll_s)


def instance_stopped(stack: DevStack) -> bool:
    return not stack.box_running()
