"""Real processes on free ports for the tests: the whole local stack and a callback receiver."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator
from pathlib import Path

from aiohttp import web

from shared.fakes.serving import serve_in_thread, start_site
from shared.tools.devstack import DevStack, DevStackConfig, free_port

__all__ = ["MODEL", "serve_app_in_thread", "start_stack", "wait_until"]

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


@contextlib.contextmanager
def serve_app_in_thread(app: web.Application) -> Iterator[str]:
    """Serve an aiohttp app on 127.0.0.1 (free port) from its own event loop; yields its URL."""

    async def start() -> tuple[web.AppRunner, int]:
        return await start_site(app, "127.0.0.1", 0)

    async def close(served: tuple[web.AppRunner, int]) -> None:
        await served[0].cleanup()

    with serve_in_thread(start, close, name="aiohttp-app") as (_, port):
        yield f"http://127.0.0.1:{port}"
