"""The local processes that stand in for containers: their environment (what Vast sets inside a box),
starting them, stopping them as ``docker stop`` does, and noticing when one dies by itself."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
from typing import Any

from shared.fakes.vast.instances import FakeInstance, free_port
from shared.fakes.vast.state import FakeVastState

__all__ = ["shutdown_instances", "start_process", "terminate", "watch_processes"]


def _process_env(state: FakeVastState, inst: FakeInstance) -> dict[str, str]:
    config = state.config
    env: dict[str, str] = {}
    if config.inherit_env:
        env.update(
            {
                k: v
                for k, v in os.environ.items()
                if k not in ("VASTAI_API_KEY", "VAST_API_KEY", "CONTAINER_API_KEY", "CONTAINER_ID")
            }
        )
    env.update(config.extra_env)
    env.update({k: v for k, v in inst.env.items() if not k.startswith("-")})
    agent_container_port = inst.env.get("GPUQ_AGENT_PORT", "8000")
    binding = inst.ports.get(f"{agent_container_port}/tcp")
    env["GPUQ_AGENT_PORT"] = binding[0]["HostPort"] if binding else str(free_port())
    env["GPUQ_AGENT_HOST"] = "127.0.0.1"
    env["CONTAINER_ID"] = str(inst.id)
    env["CONTAINER_API_KEY"] = inst.container_key
    env["VAST_URL"] = state.url
    env["PUBLIC_IPADDR"] = config.public_ipaddr
    env["GPUQ_AGENT_PROVIDER"] = "vast"
    env.setdefault("GPUQ_AGENT_INSTANCE_ID", str(inst.id))
    if "GPUQ_AGENT_INSTANCE_ID" not in inst.env:
        env["GPUQ_AGENT_INSTANCE_ID"] = str(inst.id)
    for name, bindings in inst.ports.items():
        port, _, proto = name.partition("/")
        if bindings:
            env[f"VAST_{proto.upper()}_PORT_{port}"] = bindings[0]["HostPort"]
    return env


def start_process(state: FakeVastState, inst: FakeInstance) -> None:
    config = state.config
    command = config.image_commands.get(inst.image or "", config.command)
    out: Any = subprocess.DEVNULL
    if config.log_dir is not None:
        config.log_dir.mkdir(parents=True, exist_ok=True)
        out = open(config.log_dir / f"instance-{inst.id}.log", "ab")  # noqa: SIM115
    try:
        inst.proc = subprocess.Popen(
            command,
            env=_process_env(state, inst),
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
            cwd=str(config.workdir) if config.workdir else None,
        )
    finally:
        if out is not subprocess.DEVNULL:
            out.close()


async def terminate(proc: subprocess.Popen[bytes] | None, grace_s: float) -> int | None:
    """SIGTERM the process group, wait ``grace_s``, then SIGKILL it (docker stop, more or less)."""
    if proc is None:
        return None
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            await asyncio.to_thread(proc.wait, grace_s)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            await asyncio.to_thread(proc.wait)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)  # leftovers of the group (children that ignored SIGTERM)
    return proc.returncode


async def watch_processes(state: FakeVastState) -> None:
    """A container whose process dies while it should run is ``exited``, as on Vast."""
    while True:
        await asyncio.sleep(0.1)
        for inst in list(state.instances.values()):
            if (
                inst.proc is not None
                and inst.actual_status == "running"
                and inst.intended_status == "running"
                and inst.proc.poll() is not None
            ):
                inst.exit_code = inst.proc.returncode
                inst.proc = None
                inst.actual_status = "exited"
                inst.status_msg = f"container exited with code {inst.exit_code}"
                inst.ports, inst.running_since = {}, None


async def shutdown_instances(state: FakeVastState) -> None:
    """Stop every instance process (SIGTERM, grace, SIGKILL) and every transition task."""
    for inst in list(state.instances.values()):
        if inst.task is not None:
            inst.task.cancel()
    await asyncio.gather(
        *(terminate(inst.proc, state.config.stop_grace_s) for inst in state.instances.values()), return_exceptions=True
    )
    pending = [task for task in state.background if not task.done()]
    for task in pending:
        task.cancel()
    if pending:
        await asyncio.gather(*pending, return_exceptions=True)
