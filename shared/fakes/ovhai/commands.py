"""What each ``ovhai app`` verb does to the state (run, start, stop, get, delete, list), and the errors
the service answers (unauthorized, not found, conflicts, armed one-shot failures)."""

from __future__ import annotations

import argparse
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

from shared.fakes.ovhai.apps import UP, boot_steps, iso, render, schedule, state_at, timings
from shared.fakes.ovhai.process import launch, terminate

__all__ = ["CliError", "execute"]


class CliError(Exception):
    pass


def _key_values(items: list[str], what: str) -> dict[str, str]:
    out: dict[str, str] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep:
            raise CliError(f"invalid {what} '{item}': expected key=value")
        out[key] = value
    return out


def _volume(spec: str, region_default: str) -> dict[str, Any]:
    source, _, rest = spec.partition(":")
    parts = rest.split(":")
    if not source or "@" not in source or not parts[0]:
        raise CliError(f"invalid volume '{spec}': expected container@alias[/prefix]:mount_path[:perm][:cache]")
    container, _, alias_prefix = source.partition("@")
    alias, _, prefix = alias_prefix.partition("/")
    return {
        "dataStore": {"alias": alias or region_default, "container": container, "prefix": prefix},
        "mountPath": parts[0],
        "permission": (parts[1] if len(parts) > 1 else "RO").upper(),
        "cache": len(parts) > 2 and parts[2].lower() == "cache",
    }


def _run(args: argparse.Namespace, state: dict[str, Any], now: float, log_dir: Path) -> dict[str, Any]:
    app_id = str(uuid.uuid4())
    envs = _key_values(args.env, "env")
    app: dict[str, Any] = {
        "id": app_id,
        "createdAt": iso(now),
        "spec": {
            "name": args.name or f"app-{app_id[:8]}",
            "image": args.image,
            "command": [c for c in args.command if c != "--"],
            "region": "GRA",
            "resources": {
                "gpu": args.gpu if args.gpu is not None else (0 if args.cpu else 1),
                "gpuModel": "L4" if (args.flavor or "").startswith("l4") else "V100S",
                "flavor": args.flavor or "ai1-1-gpu",
                "cpu": args.cpu or 11,
                "memory": 48318382080,
                "ephemeralStorage": 422212465065984,
            },
            "volumes": [_volume(v, "GRA") for v in args.volume],
            "unsecureHttp": bool(args.unsecure_http),
            "defaultHttpPort": args.default_http_port,
            "labels": {**_key_values(args.label, "label"), "ovh/id": app_id, "ovh/type": "app"},
            "envVars": [{"name": k, "value": v} for k, v in envs.items()],
            "scalingStrategy": {"fixed": {"replicas": 1}},
        },
        "_timeline": [],
        "_url": f"https://{app_id}.app.gra.ai.cloud.ovh.net",
        "_launch_port": None,
        "_pid": None,
    }
    schedule(app, boot_steps(state["config"]), now)
    launch(app, state["config"], log_dir)
    state["apps"][app_id] = app
    return app


def _find(state: dict[str, Any], app_id: str, now: float) -> dict[str, Any]:
    app: dict[str, Any] | None = state["apps"].get(app_id)
    if app is None or state_at(app, now) == "DELETED":
        raise CliError(f"Error: app {app_id} not found (404)")
    return app


def execute(args: argparse.Namespace, state: dict[str, Any], now: float, log_dir: Path) -> Any:
    """Run one ``ovhai app`` call on the state; returns what it prints, or raises :class:`CliError`."""
    config = state["config"]
    if config.get("token") and args.token != config["token"]:
        raise CliError("Error: 401 Unauthorized: invalid or missing token (run ovhai login)")
    failure = config.get("fail", {}).pop(args.verb, None)
    if failure:
        raise CliError(f"Error: {failure}")
    if args.verb == "run":
        return render(_run(args, state, now, log_dir), now)
    if args.verb == "list":
        return [render(a, now) for a in state["apps"].values() if state_at(a, now) != "DELETED"]
    app = _find(state, args.id, now)
    change = _CHANGES.get(args.verb)  # "get" changes nothing
    if change is not None:
        change(app, args.id, config, now, log_dir)
    return render(app, now)


_RESTARTABLE = ("STOPPED", "FAILED", "ERROR")


def _start(app: dict[str, Any], app_id: str, config: dict[str, Any], now: float, log_dir: Path) -> None:
    current = state_at(app, now)
    if current not in _RESTARTABLE:
        raise CliError(f"Error: 409 Conflict: app {app_id} cannot be started while {current}")
    schedule(app, boot_steps(config), now)
    launch(app, config, log_dir)


def _stop(app: dict[str, Any], app_id: str, config: dict[str, Any], now: float, log_dir: Path) -> None:
    current = state_at(app, now)
    if current not in UP:
        raise CliError(f"Error: 409 Conflict: app {app_id} cannot be stopped while {current}")
    schedule(app, [("STOPPING", 0.0), ("STOPPED", timings(config)["STOPPING"])], now)
    terminate(app)


def _delete(app: dict[str, Any], app_id: str, config: dict[str, Any], now: float, log_dir: Path) -> None:
    if state_at(app, now) not in _RESTARTABLE:
        raise CliError(f"Error: 409 Conflict: app {app_id} must be stopped before it is deleted")
    schedule(app, [("DELETING", 0.0), ("DELETED", timings(config)["DELETING"])], now)
    terminate(app)


_CHANGES: dict[str, Callable[[dict[str, Any], str, dict[str, Any], float, Path], None]] = {
    "start": _start,
    "stop": _stop,
    "delete": _delete,
}
