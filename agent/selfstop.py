"""Idle watch: after the last job and the idle grace, ask the control plane (``agent.drain``), then stop
this box and confirm it stopped.

A job that arrives while stopping is refused with 503 ``instance_stopping``; the control plane
snoozes it and starts the box again once it is stopped, so nothing is lost.

A box whose model server failed (phase ``model_server_unavailable``) stops at once, without keep-warm
or asking: it has announced why, and the control plane stops it too and starts another; stopping here
as well keeps it from billing when that announcement did not get through.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable

from agent.state import AgentState, Phase
from shared.boxes.providers.base import ComputeProvider
from shared.models import InstanceState

__all__ = ["watch_idle"]

log = logging.getLogger("gpuq.agent.selfstop")

STOP_RETRY_S = 5.0


async def watch_idle(
    state: AgentState,
    provider: ComputeProvider | None,
    instance_id: str,
    keep_warm_s: Callable[[], float],
    *,
    may_stop: Callable[[], Awaitable[bool]] | None = None,
) -> None:
    """Stop the box once it has been idle for the idle policy's keep-warm time and ``may_stop`` (the
    control plane's drain answer) agrees; refused, it stays up for another idle period."""
    while True:
        # Wait until there is nothing running and the box is past start-up.
        while state.active() or state.phase in (Phase.STARTING, Phase.LOADING_MODEL):
            state.activity.clear()
            await state.activity.wait()
        if state.phase is Phase.FAILED:
            log.warning("model server failed (%s): stopping instance %s", state.reason(), instance_id)
            if await _stop(provider, instance_id):
                return
            await asyncio.sleep(STOP_RETRY_S)
            continue
        keep = keep_warm_s()
        idle_for = time.monotonic() - state.idle_since
        state.activity.clear()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(state.activity.wait(), timeout=max(0.0, keep - idle_for))
            continue  # something happened: re-evaluate
        if state.active():
            continue
        if may_stop is not None and not await may_stop():
            state.idle_since = time.monotonic()  # the pool keeps it: another idle period before asking again
            continue
        if state.active():  # a job came while the control plane answered
            continue
        state.phase = Phase.STOPPING
        log.info(
            "idle for %.1fs (keep-warm %.1fs by the idle policy) after %d job(s): stopping instance %s",
            time.monotonic() - state.idle_since,
            keep,
            state.jobs_done,
            instance_id,
        )
        if await _stop(provider, instance_id):
            return
        state.phase = Phase.READY
        await asyncio.sleep(STOP_RETRY_S)


async def _stop(provider: ComputeProvider | None, instance_id: str) -> bool:
    if provider is None:
        log.warning("no provider configured: cannot stop this box; the reaper will")
        return False
    try:
        instance = await provider.stop(instance_id)
    except Exception as exc:
        log.error("stop of %s failed: %s", instance_id, exc)
        return False
    if instance.state in (InstanceState.STOPPED, InstanceState.STOPPING, InstanceState.GONE):
        log.info("stop of %s confirmed (%s)", instance_id, instance.state.value)
        return True
    log.error("stop of %s not confirmed: provider says %s", instance_id, instance.state.value)
    return False
