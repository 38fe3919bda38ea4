"""``gpuq cost`` / ``GET /v1/cost``: what the boxes cost over a window, and where the money went."""

from __future__ import annotations

import re
from collections import defaultdict
from typing import Any

from shared.boxes.instances import session_records, spans_of
from shared.controlplane import ControlPlane
from shared.errors import ValidationFailed

__all__ = ["cost_report", "parse_since"]

_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_since(text: str) -> float:
    """``90s``, ``30m``, ``24h``, ``7d`` → seconds."""
    match = re.fullmatch(r"([0-9]+(?:\.[0-9]+)?)([smhd])", text)
    if not match:
        raise ValidationFailed("since: a duration such as 30m, 24h or 7d", code="invalid_since")
    return float(match[1]) * _UNITS[match[2]]


def _busy_seconds(spans: list[tuple[float, float]]) -> float:
    total, end = 0.0, float("-inf")
    for lo, hi in sorted(spans):
        if hi > end:
            total += hi - max(lo, end)
            end = hi
    return total


def cost_report(cp: ControlPlane, since_s: float) -> dict[str, Any]:
    now = cp.clock.now()
    since = now - since_s
    sessions = session_records(cp, since, now)
    per_instance: dict[str, dict[str, float]] = defaultdict(lambda: {"usd": 0.0, "hours": 0.0, "sessions": 0})
    per_model: dict[str, dict[str, float]] = defaultdict(lambda: {"usd": 0.0, "jobs": 0})
    billed = busy = usd = 0.0
    for session in sessions:
        start, stop = float(session["start_s"]), float(session.get("stop_s") or now)
        seconds = max(0.0, stop - start)
        billed += seconds
        usd += float(session.get("cost_usd", 0.0))
        row = per_instance[str(session["instance_id"])]
        row["usd"] += float(session.get("cost_usd", 0.0))
        row["hours"] += seconds / 3600
        row["sessions"] += 1
        jobs = [j for j in (cp.store.get(i) for i in session.get("jobs", [])) if j is not None]
        busy += _busy_seconds([(s.begin_s, s.end_s) for s in spans_of(jobs, now)])
        for job in jobs:
            per_model[job.model]["usd"] += job.cost_usd or 0.0
            per_model[job.model]["jobs"] += 1
    return {
        "since_s": since_s,
        "billed_usd": round(usd, 6),
        "billed_gpu_hours": round(billed / 3600, 6),
        "cold_starts": len(sessions),
        "idle_fraction": round(1 - busy / billed, 4) if billed else 0.0,
        "per_instance": {k: {kk: round(vv, 6) for kk, vv in v.items()} for k, v in per_instance.items()},
        "per_model": {k: {kk: round(vv, 6) for kk, vv in v.items()} for k, v in per_model.items()},
    }
