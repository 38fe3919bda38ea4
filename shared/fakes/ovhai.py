"""A stand-in for the ``ovhai`` CLI (OVHcloud AI Deploy apps), for tests and the dev stack.

Run as ``python -m shared.fakes.ovhai ...`` (tests install an ``ovhai`` wrapper script on ``PATH``).
Each call is a separate process, as with the real CLI; the apps live in one JSON state file
(``OVHAI_FAKE_STATE``), guarded by an ``flock``, and every call is recorded there with its arguments.

Reproduced: ``app run`` (``--name --flavor --gpu --cpu --default-http-port --unsecure-http --label k=v
--env K=V --volume container@alias[/prefix]:mount[:perm][:cache]``, the image, and a command after it),
``app start``, ``app stop``, ``app get``, ``app delete``, ``app list``; ``-o json`` prints the app
documents the way ``ovhai`` does (``id``, ``createdAt``, ``updatedAt``, ``user``, ``spec``, ``status``
with ``state``, ``url``, ``availableReplicas``, ``info``, ``history``, ``lastTransitionDate``); without
``-o json`` a short table. States move with time like AI Deploy's: ``run``/``start`` go through
QUEUED → INITIALIZING → RUNNING, ``stop`` through STOPPING → STOPPED, ``delete`` through DELETING and
then the app is gone (``get`` fails: not found). Starting an app that is not stopped, or stopping one
that is not running, fails as the service refuses it.

Scenario knobs (the ``config`` object of the state file, see :func:`configure`):
    ``timings``   seconds spent in QUEUED, INITIALIZING, STOPPING, DELETING;
    ``token``     if set, every call must carry ``--token <it>`` (else: exit 1, unauthorized);
    ``fail``      one-shot failures: ``{"start": "message"}`` makes the next ``app start`` exit 1;
    ``no_capacity`` a start or run ends in FAILED ("not enough resources") instead of RUNNING;
    ``launch``    ``{"command": [...], "env": {...}, "port_env": "GPUQ_AGENT_PORT"}``: on run/start, start
                  this process (its own session; the app's env vars, then ``env``, then the port it must
                  listen on as ``PORT`` and as ``port_env``) and report ``http://127.0.0.1:PORT`` as the app
                  URL; stop and delete terminate it. With ``python -m agent`` as the command, the control
                  plane drives a real local agent through this "OVH" box.
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import json
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

__all__ = ["configure", "install", "main", "read_state"]

DEFAULT_TIMINGS = {"QUEUED": 0.2, "INITIALIZING": 0.3, "STOPPING": 0.3, "DELETING": 0.1}
UP = ("QUEUED", "INITIALIZING", "SCALING", "RUNNING")


class CliError(Exception):
    pass


def _iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


@contextlib.contextmanager
def _locked_state(path: Path) -> Iterator[dict[str, Any]]:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path.with_suffix(".lock"), "a+") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        state: dict[str, Any] = json.loads(path.read_text()) if path.exists() else {}
        state.setdefault("config", {})
        state.setdefault("apps", {})
        state.setdefault("calls", [])
        yield state
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(state, indent=1))
        tmp.replace(path)


def read_state(path: Path) -> dict[str, Any]:
    """The fake's whole state (apps, config, recorded calls), for assertions."""
    with _locked_state(path) as state:
        copy: dict[str, Any] = json.loads(json.dumps(state))
        return copy


def configure(path: Path, **config: Any) -> None:
    """Merge scenario knobs into the state file's ``config``."""
    with _locked_state(path) as state:
        state["config"].update(config)


def install(bin_dir: Path, state_path: Path) -> Path:
    """Write an ``ovhai`` executable into ``bin_dir`` that runs this fake on ``state_path``."""
    bin_dir.mkdir(parents=True, exist_ok=True)
    root = Path(__file__).resolve().parents[2]
    script = bin_dir / "ovhai"
    script.write_text(
        "#!/bin/sh\n"
        f"OVHAI_FAKE_STATE='{state_path}' PYTHONPATH='{root}' exec '{sys.executable}' -m shared.fakes.ovhai \"$@\"\n"
    )
    script.chmod(0o755)
    return script


# --- timelines ------------------------------------------------------------------------------------
def _current(app: dict[str, Any], now: float) -> str:
    state = "QUEUED"
    for name, at in app["_timeline"]:
        if at <= now:
            state = name
    return str(state)


def _schedule(app: dict[str, Any], steps: list[tuple[str, float]], now: float) -> None:
    """Replace the not-yet-reached part of the timeline with ``steps`` (state, seconds in the previous)."""
    app["_timeline"] = [[s, at] for s, at in app["_timeline"] if at <= now]
    at = now
    for name, delay in steps:
        at += delay
        app["_timeline"].append([name, at])


def _timings(config: dict[str, Any]) -> dict[str, float]:
    return {**DEFAULT_TIMINGS, **config.get("timings", {})}


def _boot_steps(config: dict[str, Any]) -> list[tuple[str, float]]:
    t = _timings(config)
    end = "FAILED" if config.get("no_capacity") else "RUNNING"
    return [("QUEUED", 0.0), ("INITIALIZING", t["QUEUED"]), (end, t["INITIALIZING"])]


def _render(app: dict[str, Any], now: float) -> dict[str, Any]:
    """The app as ``ovhai app get -o json`` prints it at ``now``."""
    state = _current(app, now)
    reached = [(s, at) for s, at in app["_timeline"] if at <= now]
    history = [{"state": s, "date": _iso(at)} for s, at in reached]
    info = {"code": "APP_RUNNING", "message": "App is running"} if state == "RUNNING" else {"code": state}
    if state == "FAILED":
        info = {"code": "APP_FAILED", "message": "not enough resources available to start the app"}
    return {
        "id": app["id"],
        "createdAt": app["createdAt"],
        "updatedAt": _iso(reached[-1][1]) if reached else app["createdAt"],
        "user": "user-fake",
        "spec": app["spec"],
        "status": {
            "state": state,
            "url": app["_url"],
            "availableReplicas": 1 if state == "RUNNING" else 0,
            "info": info,
            "infoUrl": f"https://ui.gra.ai.cloud.ovh.net/app/{app['id']}",
            "monitoringUrl": f"https://monitoring.gra.ai.cloud.ovh.net/d/app?var-app={app['id']}",
            "lastTransitionDate": history[-1]["date"] if history else None,
            "history": history,
        },
    }


# --- the launched process -----------------------------------------------------------------------
def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _launch(app: dict[str, Any], config: dict[str, Any], log_dir: Path) -> None:
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


def _terminate(app: dict[str, Any]) -> None:
    pid = app.get("_pid")
    if pid:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pid, signal.SIGTERM)
        app["_pid"] = None


# --- commands -------------------------------------------------------------------------------------
def _parse(argv: list[str]) -> argparse.Namespace:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("-o", "--output", default="table")
    common.add_argument("--token", default=None)
    parser = argparse.ArgumentParser(prog="ovhai", parents=[common])
    groups = parser.add_subparsers(dest="group", required=True)
    app = groups.add_parser("app", parents=[common]).add_subparsers(dest="verb", required=True)
    run = app.add_parser("run", parents=[common])
    run.add_argument("--name", default=None)
    run.add_argument("--flavor", default=None)
    run.add_argument("--gpu", type=int, default=None)
    run.add_argument("--cpu", type=int, default=None)
    run.add_argument("--default-http-port", type=int, default=8080)
    run.add_argument("--unsecure-http", action="store_true")
    run.add_argument("--label", action="append", default=[])
    run.add_argument("--env", action="append", default=[])
    run.add_argument("--volume", action="append", default=[])
    run.add_argument("image")
    run.add_argument("command", nargs=argparse.REMAINDER)
    for verb in ("start", "stop", "get", "delete"):
        app.add_parser(verb, parents=[common]).add_argument("id")
    app.add_parser("list", parents=[common])
    return parser.parse_args(argv)


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
        "createdAt": _iso(now),
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
    _schedule(app, _boot_steps(state["config"]), now)
    _launch(app, state["config"], log_dir)
    state["apps"][app_id] = app
    return app


def _find(state: dict[str, Any], app_id: str, now: float) -> dict[str, Any]:
    app: dict[str, Any] | None = state["apps"].get(app_id)
    if app is None or _current(app, now) == "DELETED":
        raise CliError(f"Error: app {app_id} not found (404)")
    return app


def _execute(args: argparse.Namespace, state: dict[str, Any], now: float, log_dir: Path) -> Any:
    config = state["config"]
    if config.get("token") and args.token != config["token"]:
        raise CliError("Error: 401 Unauthorized: invalid or missing token (run ovhai login)")
    failure = config.get("fail", {}).pop(args.verb, None)
    if failure:
        raise CliError(f"Error: {failure}")
    if args.verb == "run":
        return _render(_run(args, state, now, log_dir), now)
    if args.verb == "list":
        return [_render(a, now) for a in state["apps"].values() if _current(a, now) != "DELETED"]
    app = _find(state, args.id, now)
    current = _current(app, now)
    if args.verb == "get":
        return _render(app, now)
    if args.verb == "start":
        if current not in ("STOPPED", "FAILED", "ERROR"):
            raise CliError(f"Error: 409 Conflict: app {args.id} cannot be started while {current}")
        _schedule(app, _boot_steps(config), now)
        _launch(app, config, log_dir)
    elif args.verb == "stop":
        if current not in UP:
            raise CliError(f"Error: 409 Conflict: app {args.id} cannot be stopped while {current}")
        _schedule(app, [("STOPPING", 0.0), ("STOPPED", _timings(config)["STOPPING"])], now)
        _terminate(app)
    elif args.verb == "delete":
        if current not in ("STOPPED", "FAILED", "ERROR"):
            raise CliError(f"Error: 409 Conflict: app {args.id} must be stopped before it is deleted")
        _schedule(app, [("DELETING", 0.0), ("DELETED", _timings(config)["DELETING"])], now)
        _terminate(app)
    return _render(app, now)


def _table(result: Any) -> str:
    rows = result if isinstance(result, list) else [result]
    lines = ["ID                                   NAME             STATE         URL"]
    for app in rows:
        lines.append(
            f"{app['id']:<36} {app['spec']['name']:<16} {app['status']['state']:<13} {app['status']['url'] or ''}"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    state_path = Path(os.environ.get("OVHAI_FAKE_STATE", Path.home() / ".ovhai-fake" / "state.json"))
    try:
        args = _parse(argv)
    except SystemExit as exc:  # argparse: usage errors exit 2, as clap does
        return int(exc.code or 0)
    now = time.time()
    with _locked_state(state_path) as state:
        state["calls"].append({"argv": argv, "at": now})
        try:
            result = _execute(args, state, now, state_path.parent)
        except CliError as exc:
            print(str(exc), file=sys.stderr)
            return 1
    print(json.dumps(result, indent=2) if args.output == "json" else _table(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
