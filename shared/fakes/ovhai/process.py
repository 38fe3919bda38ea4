"""The process an app launches when the scenario asks for one (``config.launch``): its environment and
port, and terminating it on stop or delete."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
from pathlib import Path
from typing import Any

__all__ = ["launch", "terminate"]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def launch(app: dict[str, Any], config: dict[str, Any], log_dir: Path) -> None:
    launch = config.get("launch")
    if not launch:
        return
    port = app["_launch_port"] or _free_port()
    env = {
        **os.environ,
        **{e["name"]: e["value"] for e in app["spec"]["envVars"]},
        **launch.get("env", {}),
        "PORT": str(port),
        "OVHAI_APP_ID": app["id"],
    }
    env[launch.get("port_env", "PORT")] = str(port)  # e.g. GPUQ_AGENT_PORT for the real agent
    env.pop("OVHAI_FAKE_STATE", None)
    with open(log_dir / f"app-{app['id']}.log", "ab") as out:
        proc = subprocess.Popen(
            launch["command"],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
    app["_launch_port"], app["_pid"] = port, proc.pid
    app["_url"] = f"http://127.0.0.1:{port}"


def terminate(app: dict[str, Any]) -> None:
    pid = app.get("_pid")
    if pid:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pid, signal.SIGTERM)
        app["_pid"] = None
