"""The local provider: an "instance" is a real agent process on this machine.

Used by ``gpuq dev``, the demo and the tests. Like a rented box it gets a new port each time it
starts (so the control plane must discover the agent's URL, never assume it), it keeps running
when the process that started it dies, and it can stop itself (the agent calls :meth:`stop` with
its own id, as it would run ``vastai stop instance`` on Vast.ai).

State lives in one JSON file per instance under ``state_dir``, guarded by an ``flock``, so every
process (functions, agent, dev stack) sees the same boxes. Liveness comes from ``/proc``: a pid
counts only while it is alive, not a zombie, and has the start time we recorded (no pid reuse).
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import json
import logging
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from shared.models import Instance, InstanceState
from shared.security.signing import derive_agent_secret

__all__ = ["LocalLaunch", "LocalProvider", "process_alive"]

log = logging.getLogger("gpuq.provider.local")

_children: dict[int, subprocess.Popen[bytes]] = {}


@dataclass(frozen=True)
class LocalLaunch:
    """How to start an agent process: the environment it gets besides port and instance id."""

    env: dict[str, str] = field(default_factory=dict)
    agent_master_secret: str = ""  # each box gets its own secret derived from it
    log_dir: Path | None = None
    command: tuple[str, ...] = (sys.executable, "-m", "agent")
    price_per_hour: float = 0.0


def _proc_start_ticks(pid: int) -> int | None:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat.rsplit(")", 1)[1].split()
    if fields[0] in ("Z", "X"):
        return None
    return int(fields[19])


def process_alive(pid: int | None, start_ticks: int | None) -> bool:
    for child_pid, proc in list(_children.items()):
        if proc.poll() is not None:  # reap our exited children so they do not linger as zombies
            del _children[child_pid]
    if not pid:
        return False
    ticks = _proc_start_ticks(pid)
    return ticks is not None and (start_ticks is None or ticks == start_ticks)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class LocalProvider:
    name = "local"

    def __init__(self, state_dir: Path, launch: LocalLaunch | None = None, *, stop_grace_s: float = 10.0) -> None:
        self.state_dir = Path(state_dir)
        self.state_dir.mkdir(parents=True, exist_ok=True)
        self._launch = launch
        self._stop_grace_s = stop_grace_s

    # --- state files ----------------------------------------------------------------------------
    @contextlib.contextmanager
    def _locked(self, instance_id: str) -> Iterator[dict[str, Any]]:
        path = self.state_dir / f"{instance_id}.json"
        with open(self.state_dir / f"{instance_id}.lock", "a+") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            record: dict[str, Any] = json.loads(path.read_text()) if path.exists() else {"id": instance_id}
            before = dict(record)
            yield record
            if record != before:
                tmp = path.with_suffix(".tmp")
                tmp.write_text(json.dumps(record))
                tmp.replace(path)

    def _view(self, record: dict[str, Any]) -> Instance:
        alive = process_alive(record.get("pid"), record.get("start_ticks"))
        if alive:
            state = InstanceState.STOPPING if record.get("stopping") else InstanceState.RUNNING
        else:
            state = InstanceState.STOPPED
        return Instance(
            id=record["id"],
            provider=self.name,
            state=state,
            agent_url=f"http://127.0.0.1:{record['port']}" if alive and record.get("port") else None,
            label="gpuq",
            price_per_hour=float(record.get("price_per_hour", 0.0)),
            started_at=record.get("started_at"),
            stopped_at=None if alive else record.get("stopped_at"),
        )

    # --- sync core (each call is a few ms of file I/O and at most one fork) ---------------------
    def get_sync(self, instance_id: str) -> Instance:
        with self._locked(instance_id) as record:
            return self._view(record)

    def start_sync(self, instance_id: str) -> Instance:
        if self._launch is None:
            raise RuntimeError("this LocalProvider was built without launch settings and cannot start boxes")
        with self._locked(instance_id) as record:
            if process_alive(record.get("pid"), record.get("start_ticks")):
                return self._view(record)
            port = _free_port()
            env = {
                **os.environ,
                **self._launch.env,
                "GPUQ_AGENT_PORT": str(port),
                "GPUQ_AGENT_HOST": "127.0.0.1",
                "GPUQ_AGENT_INSTANCE_ID": instance_id,
                "GPUQ_AGENT_PROVIDER": "local",
                "GPUQ_AGENT_LOCAL_STATE_DIR": str(self.state_dir),
                "GPUQ_AGENT_SECRET": derive_agent_secret(self._launch.agent_master_secret, instance_id),
            }
            log_path = (self._launch.log_dir / f"agent-{instance_id}.log") if self._launch.log_dir else None
            if log_path is not None:
                log_path.parent.mkdir(parents=True, exist_ok=True)
            with open(log_path or os.devnull, "ab") as out:
                proc = subprocess.Popen(
                    self._launch.command,
                    env=env,
                    stdout=out,
                    stderr=subprocess.STDOUT,
                    stdin=subprocess.DEVNULL,
                    start_new_session=True,
                )
            _children[proc.pid] = proc
            record.update(
                pid=proc.pid,
                start_ticks=_proc_start_ticks(proc.pid),
                port=port,
                started_at=time.time(),
                stopping=False,
                stopped_at=None,
                price_per_hour=self._launch.price_per_hour,
                starts=int(record.get("starts", 0)) + 1,
            )
            log.info("instance %s started: agent pid %s on port %s", instance_id, proc.pid, port)
            return self._view(record)

    def _signal(self, record: dict[str, Any], sig: signal.Signals) -> None:
        pid = record.get("pid")
        if pid and process_alive(pid, record.get("start_ticks")):
            with contextlib.suppress(ProcessLookupError):
                if pid == os.getpid():
                    os.kill(pid, sig)
                else:
                    os.killpg(pid, sig)

    def stop_sync(self, instance_id: str) -> Instance:
        with self._locked(instance_id) as record:
            if not process_alive(record.get("pid"), record.get("start_ticks")):
                return self._view(record)
            record["stopping"] = True
            self._signal(record, signal.SIGTERM)
            if record.get("pid") == os.getpid():
                # The agent stopping itself: its SIGTERM handler shuts it down after we return.
                record["stopped_at"] = time.time()
                return self._view(record).model_copy(update={"state": InstanceState.STOPPING})
        deadline = time.monotonic() + self._stop_grace_s
        while time.monotonic() < deadline:
            with self._locked(instance_id) as record:
                if not process_alive(record.get("pid"), record.get("start_ticks")):
                    record["stopped_at"] = record.get("stopped_at") or time.time()
                    log.info("instance %s stopped", instance_id)
                    return self._view(record)
            time.sleep(0.05)
        with self._locked(instance_id) as record:
            log.warning("instance %s did not stop within %.0fs: killing it", instance_id, self._stop_grace_s)
            self._signal(record, signal.SIGKILL)
            record["stopped_at"] = time.time()
        for _ in range(100):
            view = self.get_sync(instance_id)
            if view.state is InstanceState.STOPPED:
                return view
            time.sleep(0.02)
        return self.get_sync(instance_id)

    def start_count(self, instance_id: str) -> int:
        """How many times this box was started (tests and the demo count cold starts with it)."""
        with self._locked(instance_id) as record:
            return int(record.get("starts", 0))

    def list_sync(self) -> list[Instance]:
        return [self.get_sync(p.stem) for p in sorted(self.state_dir.glob("*.json"))]

    # --- the async interface --------------------------------------------------------------------
    async def get(self, instance_id: str) -> Instance | None:
        return await asyncio.to_thread(self.get_sync, instance_id)

    async def start(self, instance_id: str) -> Instance:
        return await asyncio.to_thread(self.start_sync, instance_id)

    async def stop(self, instance_id: str) -> Instance:
        return await asyncio.to_thread(self.stop_sync, instance_id)

    async def list(self) -> list[Instance]:
        return await asyncio.to_thread(self.list_sync)
