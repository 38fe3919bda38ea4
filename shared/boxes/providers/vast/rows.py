"""Reading Vast's instance rows: gpuq's state of an instance, the agent's URL, the env it was given.

Pure functions of the JSON rows ``GET /api/v0/instances/{id}/`` and ``GET /api/v1/instances/`` send;
no I/O here.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from shared.models import InstanceState

__all__ = ["agent_url_of", "extra_env_of", "instance_state", "lower", "vast_id"]


def lower(value: Any) -> str:
    """A row field as a comparable word (``None`` → ``""``)."""
    return str(value).strip().lower() if value is not None else ""


def instance_state(row: Mapping[str, Any] | None) -> InstanceState:
    """Vast's ``actual_status`` / ``intended_status`` / ``cur_state`` → gpuq's state.

    ``actual_status`` is the container (null while provisioning, loading, running, stopped, exited,
    frozen, rebooting, unknown, offline); ``intended_status`` what was asked (running, stopped,
    frozen); ``cur_state`` the hardware contract (``unloaded`` once destroyed). Anything that was asked
    to run and does not run yet is STARTING (the deadline decides when that is "stuck").
    """
    if row is None:
        return InstanceState.GONE
    actual, intended, cur = (
        lower(row.get("actual_status")),
        lower(row.get("intended_status")),
        lower(row.get("cur_state")),
    )
    if cur == "unloaded" or actual in ("destroyed", "deleted"):
        return InstanceState.GONE
    if actual == "running":
        return InstanceState.STOPPING if intended in ("stopped", "frozen") else InstanceState.RUNNING
    if intended in ("stopped", "frozen"):
        return InstanceState.STOPPING if actual in ("loading", "rebooting") else InstanceState.STOPPED
    if not intended and actual in ("stopped", "exited", "frozen"):
        return InstanceState.STOPPED
    return InstanceState.STARTING


def agent_url_of(row: Mapping[str, Any] | None, container_port: int) -> str | None:
    """``http://<public_ipaddr>:<HostPort>`` of the agent's container port, read from ``ports``
    (``{"8000/tcp": [{"HostIp": "0.0.0.0", "HostPort": "41234"}]}``); the host port changes on every
    restart, so it is never cached or assumed."""
    if not row:
        return None
    ip = str(row.get("public_ipaddr") or "").strip()
    ports = row.get("ports") or {}
    if not ip or not isinstance(ports, Mapping):
        return None
    bindings = ports.get(f"{container_port}/tcp") or []
    host_ports = [str(b.get("HostPort", "")).strip() for b in bindings if isinstance(b, Mapping)]
    host_ports = [p for p in host_ports if p.isdigit()]
    if not host_ports:
        return None
    host = f"[{ip}]" if ":" in ip else ip
    return f"http://{host}:{host_ports[0]}"


def extra_env_of(row: Mapping[str, Any]) -> dict[str, str]:
    """``extra_env`` as Vast sends it (a list of ``[name, value]`` pairs) or as a dict."""
    raw = row.get("extra_env") or []
    if isinstance(raw, Mapping):
        return {str(k): str(v) for k, v in raw.items()}
    out: dict[str, str] = {}
    for pair in raw:
        if isinstance(pair, list | tuple) and len(pair) == 2:
            out[str(pair[0])] = str(pair[1])
    return out


def vast_id(row: Mapping[str, Any]) -> int:
    """The instance id of a row."""
    return int(row["id"])
