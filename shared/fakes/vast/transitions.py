"""How an instance moves: create or start → scheduling → loading → running; stop → stopped (the
process signalled after ``stop_delay_s``); a start that stays stuck when armed; destroy."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable

from shared.fakes.vast.instances import FakeInstance, assign_ports
from shared.fakes.vast.processes import start_process, terminate
from shared.fakes.vast.state import FakeVastState

__all__ = ["boot", "destroy", "request_start", "request_stop", "transition"]


def transition(state: FakeVastState, inst: FakeInstance, coro: Callable[[], Awaitable[None]]) -> None:
    if inst.task is not None and not inst.task.done():
        inst.task.cancel()
    inst.task = state.spawn(coro())


async def boot(state: FakeVastState, inst: FakeInstance, loading_delay_s: float) -> None:
    config = state.config
    await asyncio.sleep(config.schedule_delay_s)
    inst.actual_status, inst.status_msg = "loading", f"Pulling image {inst.image}"
    await asyncio.sleep(loading_delay_s)
    assign_ports(inst)
    inst.exit_code = None
    start_process(state, inst)
    inst.actual_status, inst.cur_state = "running", "running"
    inst.status_msg = f"success, running {inst.image}"
    inst.running_since = time.time()
    inst.starts += 1


async def _halt(state: FakeVastState, inst: FakeInstance, delay_s: float) -> None:
    await asyncio.sleep(delay_s)
    inst.status_msg = "stopping"
    code = await terminate(inst.proc, state.config.stop_grace_s)
    inst.proc = None
    inst.exit_code = code
    inst.actual_status, inst.cur_state, inst.status_msg = "stopped", "stopped", "stopped"
    inst.ports, inst.running_since = {}, None


def request_start(state: FakeVastState, inst: FakeInstance) -> None:
    if inst.intended_status == "running" and (inst.stuck or inst.actual_status in ("running", "loading", None)):
        return  # already on its way (a stuck start stays stuck: the GPU is still someone else's)
    inst.intended_status, inst.cur_state = "running", "running"
    faults = state.config.faults
    if inst.actual_status in ("stopped", "exited") and faults.stuck_starts > 0:
        faults.stuck_starts -= 1
        inst.stuck = True
        if inst.task is not None:
            inst.task.cancel()
        inst.status_msg = "scheduling: waiting for the machine's GPU (rented by another client)"
        return
    inst.stuck = False
    inst.status_msg = "scheduling"
    was_running = inst.proc is not None and inst.proc.poll() is None

    async def go() -> None:
        if was_running:  # a stop was under way: finish it first
            await _halt(state, inst, 0.0)
        await boot(state, inst, state.config.restart_loading_delay_s)

    transition(state, inst, go)


def request_stop(state: FakeVastState, inst: FakeInstance) -> None:
    if inst.intended_status == "stopped":
        return
    inst.intended_status = "stopped"
    inst.stuck = False
    if inst.proc is None and inst.actual_status != "running":
        if inst.task is not None:
            inst.task.cancel()
        inst.actual_status, inst.cur_state, inst.status_msg = "stopped", "stopped", "stopped"
        inst.ports = {}
        return
    transition(state, inst, lambda: _halt(state, inst, state.config.stop_delay_s))


def destroy(state: FakeVastState, inst: FakeInstance) -> None:
    """Gone at once for the API; its process is stopped in the background (SIGTERM, grace, SIGKILL)."""
    if inst.task is not None:
        inst.task.cancel()
    state.instances.pop(inst.id, None)
    state.destroyed.add(inst.id)
    state.container_keys.pop(inst.container_key, None)
    inst.actual_status, inst.intended_status, inst.cur_state = None, "stopped", "unloaded"
    proc, inst.proc = inst.proc, None
    if proc is not None:
        state.spawn(terminate(proc, state.config.stop_grace_s))
