"""Processes a benchmark starts: spawn with a log file, wait until they answer, stop them, read their CPU.

Every process gets its own session and dies with the benchmark (``PR_SET_PDEATHSIG``), so a
benchmark killed half-way leaves nothing behind. CPU comes from ``/proc/<pid>/stat`` (user +
system time of every thread, exited ones included), in clock ticks (10 ms on Linux).
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import httpx

__all__ = ["Proc", "children", "cpu_s", "find_child", "spawn", "tree_cpu_s"]

_TICKS_PER_S = os.sysconf("SC_CLK_TCK")


def _die_with_parent() -> None:
    """Runs in the child before exec: SIGTERM it when the benchmark process dies, however it dies."""
    import ctypes

    pr_set_pdeathsig = 1
    ctypes.CDLL("libc.so.6", use_errno=True).prctl(pr_set_pdeathsig, signal.SIGTERM)


def _stat_fields(pid: int) -> list[str] | None:
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return text.rsplit(")", 1)[1].split()


def cpu_s(pid: int) -> float:
    """User + system CPU seconds of one process (all its threads)."""
    fields = _stat_fields(pid)
    if fields is None:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / _TICKS_PER_S


def children(pid: int) -> list[int]:
    """Live child processes of ``pid`` (e.g. gunicorn's workers under its arbiter)."""
    out = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            fields = _stat_fields(int(entry.name))
            if fields is not None and int(fields[1]) == pid:
                out.append(int(entry.name))
    return out


def find_child(parent: int, marker: bytes = b"") -> int | None:
    """A live child of ``parent`` whose command line contains ``marker`` (e.g. a process DevStack started)."""
    for pid in children(parent):
        try:
            if marker in Path(f"/proc/{pid}/cmdline").read_bytes():
                return pid
        except OSError:
            continue
    return None


def tree_cpu_s(pid: int) -> float:
    """CPU seconds of a process and its live descendants (gunicorn's arbiter and its worker)."""
    total, todo = 0.0, [pid]
    while todo:
        current = todo.pop()
        total += cpu_s(current)
        todo.extend(children(current))
    return total


@dataclass
class Proc:
    name: str
    popen: subprocess.Popen[bytes]
    log_path: Path

    @property
    def pid(self) -> int:
        return self.popen.pid

    def cpu_s(self) -> float:
        return cpu_s(self.pid)

    def log_text(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""

    def wait_http(self, url: str, *, timeout_s: float = 60.0, ok: int = 500) -> None:
        """Poll ``url`` until it answers with a status below ``ok``."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.popen.poll() is not None:
                raise RuntimeError(f"{self.name} exited with {self.popen.returncode}; log:\n{self.log_text()[-3000:]}")
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(url, timeout=1.0).status_code < ok:
                    return
            time.sleep(0.05)
        raise RuntimeError(
            f"{self.name} did not answer at {url} within {timeout_s:.0f}s; log:\n{self.log_text()[-3000:]}"
        )

    def stop(self, grace_s: float = 5.0) -> None:
        if self.popen.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.pid, signal.SIGTERM)
        try:
            self.popen.wait(timeout=grace_s)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.pid, signal.SIGKILL)
            self.popen.wait(timeout=5)


def spawn(
    name: str, argv: Sequence[str], log_path: Path, *, env: Mapping[str, str] | None = None, cwd: Path | None = None
) -> Proc:
    """Start ``argv`` in its own session, stdout and stderr to ``log_path``."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "ab") as out:
        popen = subprocess.Popen(
            list(argv),
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env={**os.environ, **(env or {})},
            cwd=cwd,
            start_new_session=True,
            preexec_fn=_die_with_parent,
        )
    return Proc(name, popen, log_path)
