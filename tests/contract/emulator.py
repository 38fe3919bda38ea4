"""The real Firestore emulator (``gcloud emulators firestore start``) as a test server.

Started once per test session on a free port, reset between tests through the emulator's
``DELETE /emulator/v1/projects/{project}/databases/(default)/documents`` endpoint, stopped with
SIGTERM to its whole process group (gcloud's Python, the wrapper script and the Java server), then
SIGKILL after a grace period, and checked: no process of the group may survive.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path
from typing import Self

import httpx

__all__ = ["FirestoreEmulator", "GcloudEmulator", "emulator_missing_reason", "free_port", "stop_process_group"]


def emulator_missing_reason() -> str | None:
    """Why the emulator cannot run here, or ``None`` when it can."""
    gcloud = shutil.which("gcloud")
    if gcloud is None:
        return "gcloud is not on PATH: install the Google Cloud SDK with the cloud-firestore-emulator component"
    sdk_root = Path(gcloud).resolve().parent.parent
    if not (sdk_root / "platform" / "cloud-firestore-emulator" / "cloud_firestore_emulator").exists():
        return (
            f"the Firestore emulator is not installed in {sdk_root} "
            "(gcloud components install cloud-firestore-emulator, or apt google-cloud-cli-firestore-emulator)"
        )
    if shutil.which("java") is None:
        return "java is not on PATH: the Firestore emulator needs a Java runtime (11+)"
    return None


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # a process of the group exists but is not ours to signal
        return True
    return True


def _wait_group_gone(proc: subprocess.Popen[bytes], pgid: int, timeout_s: float) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        proc.poll()  # reap the leader, or it lingers as a zombie and the group never looks empty
        if not _group_alive(pgid):
            return True
        time.sleep(0.05)
    proc.poll()
    return not _group_alive(pgid)


def stop_process_group(proc: subprocess.Popen[bytes], *, grace_s: float = 10.0) -> str:
    """SIGTERM every process of ``proc``'s group (it must lead its own session), SIGKILL after ``grace_s``.

    Returns ``"terminated"`` or ``"killed"``; raises ``RuntimeError`` if a process survives SIGKILL.
    """
    pgid = proc.pid
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pgid, signal.SIGTERM)
    if _wait_group_gone(proc, pgid, grace_s):
        return "terminated"
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pgid, signal.SIGKILL)
    if _wait_group_gone(proc, pgid, 10.0):
        return "killed"
    raise RuntimeError(f"process group {pgid} survived SIGKILL")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class GcloudEmulator:
    """One ``gcloud … emulators … start`` process group; ``host`` is ``127.0.0.1:PORT`` (what the
    client's ``*_EMULATOR_HOST`` variable is set to)."""

    label = "gcloud"
    command: tuple[str, ...] = ()  # gcloud's arguments before --host-port

    def __init__(self, log_path: Path, *, port: int | None = None) -> None:
        self.port = port or free_port()
        self.host = f"127.0.0.1:{self.port}"
        self.log_path = log_path
        self._proc: subprocess.Popen[bytes] | None = None
        self._http = httpx.Client(base_url=f"http://{self.host}", timeout=5.0)

    def start(self, *, timeout_s: float = 60.0) -> Self:
        gcloud = shutil.which("gcloud")
        assert gcloud is not None, "gcloud is not on PATH"
        env = {**os.environ, "CLOUDSDK_CORE_DISABLE_PROMPTS": "1"}
        with open(self.log_path, "ab") as log:
            self._proc = subprocess.Popen(
                [gcloud, *self.command, f"--host-port={self.host}"],
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env=env,
                start_new_session=True,
            )
        try:
            self._wait_ready(timeout_s)
        except BaseException:
            self.stop()
            raise
        return self

    def _wait_ready(self, timeout_s: float) -> None:
        """The emulator answers ``GET /`` with ``Ok`` once it serves; give up early if it exits."""
        assert self._proc is not None
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                raise RuntimeError(f"the {self.label} emulator exited with {self._proc.returncode}:\n{self.log_tail()}")
            with contextlib.suppress(httpx.TransportError):
                if self._http.get("/").text.strip() == "Ok":
                    return
            time.sleep(0.1)
        raise TimeoutError(f"the {self.label} emulator did not answer within {timeout_s:.0f}s:\n{self.log_tail()}")

    def log_tail(self, lines: int = 20) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"

    def stop(self, *, grace_s: float = 10.0) -> str:
        self._http.close()
        if self._proc is None:
            return "not started"
        outcome = stop_process_group(self._proc, grace_s=grace_s)
        self._proc = None
        return outcome


class FirestoreEmulator(GcloudEmulator):
    """The Firestore emulator; ``host`` is the value of ``FIRESTORE_EMULATOR_HOST``."""

    label = "Firestore"
    command = ("emulators", "firestore", "start")

    def reset(self, project: str) -> None:
        """Delete every document of ``project``'s default database."""
        response = self._http.delete(f"/emulator/v1/projects/{project}/databases/(default)/documents")
        response.raise_for_status()
