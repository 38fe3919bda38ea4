"""Idle time of a box's session: seconds it was up (ready) with no job running on it.

Kept on the open session of the box's registry record (``shared.boxes.instances``), changed inside the
compare-and-set writes that already change the box's jobs, so it costs no write of its own:
``idle_since`` is set when the box becomes ready with nothing to run, or when its last job ends; a job
taking a slot adds ``now - idle_since`` to ``idle_s`` and clears it. A closed session keeps its total as
``idle_s``. ``gpuq_instance_idle_seconds_total`` adds them up (``shared.observability.metrics``).
"""

from __future__ import annotations

from typing import Any

__all__ = ["idle_seconds", "note_busy", "note_idle"]


def note_idle(record: dict[str, Any], now: float) -> None:
    """The box is up and nothing runs on it (from now on, until a job comes)."""
    session = record.get("session")
    if session is not None and not record.get("running") and session.get("idle_since") is None:
        session["idle_since"] = now


def note_busy(record: dict[str, Any], now: float) -> None:
    """A job takes a slot: an idle stretch, if one was under way, ends now."""
    session = record.get("session")
    if session is not None and session.get("idle_since") is not None:
        session["idle_s"] = idle_seconds(session, now)
        session["idle_since"] = None


def idle_seconds(session: dict[str, Any], now: float) -> float:
    """The session's idle seconds up to ``now`` (its stop, for a closed one)."""
    since = session.get("idle_since")
    ongoing = max(0.0, now - float(since)) if since is not None else 0.0
    return round(float(session.get("idle_s") or 0.0) + ongoing, 3)
