"""An AI Deploy app over time: the timeline of its states (QUEUED → INITIALIZING → RUNNING, STOPPING →
STOPPED, DELETING → DELETED) and its document as ``ovhai app get -o json`` prints it."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

__all__ = ["DEFAULT_TIMINGS", "UP", "boot_steps", "iso", "render", "schedule", "state_at", "timings"]


DEFAULT_TIMINGS = {"QUEUED": 0.2, "INITIALIZING": 0.3, "STOPPING": 0.3, "DELETING": 0.1}
UP = ("QUEUED", "INITIALIZING", "SCALING", "RUNNING")


def iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def state_at(app: dict[str, Any], now: float) -> str:
    state = "QUEUED"
    for name, at in app["_timeline"]:
        if at <= now:
            state = name
    return str(state)


def schedule(app: dict[str, Any], steps: list[tuple[str, float]], now: float) -> None:
    """Replace the not-yet-reached part of the timeline with ``steps`` (state, seconds in the previous)."""
    app["_timeline"] = [[s, at] for s, at in app["_timeline"] if at <= now]
    at = now
    for name, delay in steps:
        at += delay
        app["_timeline"].append([name, at])


def timings(config: dict[str, Any]) -> dict[str, float]:
    return {**DEFAULT_TIMINGS, **config.get("timings", {})}


def boot_steps(config: dict[str, Any]) -> list[tuple[str, float]]:
    t = timings(config)
    end = "FAILED" if config.get("no_capacity") else "RUNNING"
    return [("QUEUED", 0.0), ("INITIALIZING", t["QUEUED"]), (end, t["INITIALIZING"])]


def render(app: dict[str, Any], now: float) -> dict[str, Any]:
    """The app as ``ovhai app get -o json`` prints it at ``now``."""
    state = state_at(app, now)
    reached = [(s, at) for s, at in app["_timeline"] if at <= now]
    history = [{"state": s, "date": iso(at)} for s, at in reached]
    info = {"code": "APP_RUNNING", "message": "App is running"} if state == "RUNNING" else {"code": state}
    if state == "FAILED":
        info = {"code": "APP_FAILED", "message": "not enough resources available to start the app"}
    return {
        "id": app["id"],
        "createdAt": app["createdAt"],
        "updatedAt": iso(reached[-1][1]) if reached else app["createdAt"],
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
