"""Daily and monthly spending caps.

The reaper measures what boxes cost in the current UTC day and month (closed sessions plus the open
one so far). At ``budget_warn_fraction`` of a cap it logs a warning event once per period. At the cap it
pauses the job queue: running jobs finish, the box then idles and stops itself, new jobs are still
accepted and wait with status reason ``budget_exceeded``. When the period rolls over or the cap is
raised, the queue is resumed and waiting jobs run. No job is dropped.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import Any

from shared.boxes.instances import session_records
from shared.controlplane import ControlPlane
from shared.jobs.lifecycle import redispatch_now
from shared.observability.events import announce
from shared.states import JobStatus

__all__ = ["budget_exceeded", "check_budget", "spend_usd"]

log = logging.getLogger("gpuq.budget")

KIND = "budget"
KEY = "state"


def _period_starts(now: float) -> tuple[float, float]:
    moment = datetime.fromtimestamp(now, UTC)
    day = moment.replace(hour=0, minute=0, second=0, microsecond=0)
    return day.timestamp(), day.replace(day=1).timestamp()


def spend_usd(cp: ControlPlane, now: float) -> tuple[float, float]:
    """(this UTC day, this UTC month) in $: each session's billed seconds inside the window times its price."""
    day_start, month_start = _period_starts(now)
    day = month = 0.0
    for session in session_records(cp, month_start, now):
        rate = float(session.get("price_per_hour", 0.0)) / 3600.0
        start, stop = float(session["start_s"]), float(session.get("stop_s") or now)
        month += max(0.0, stop - max(start, month_start)) * rate
        day += max(0.0, stop - max(start, day_start)) * rate
    return day, month


def _numbers(period: str, spent: float, cap: float, reason: str) -> dict[str, Any]:
    return {
        "reason": reason,
        "period": period,
        "spent_usd": round(spent, 6),
        "cap_usd": cap,
        "fraction": round(spent / cap, 4),
    }


def _state(cp: ControlPlane) -> dict[str, Any]:
    return cp.store.get_record(KIND, KEY) or {"exceeded": False, "warned": []}


def budget_exceeded(cp: ControlPlane) -> bool:
    return bool(_state(cp).get("exceeded"))


def check_budget(cp: ControlPlane) -> dict[str, Any]:
    s = cp.settings
    if s.budget_daily_usd <= 0 and s.budget_monthly_usd <= 0:
        return {}
    now = cp.clock.now()
    day, month = spend_usd(cp, now)
    day_start, month_start = _period_starts(now)
    state = _state(cp)
    over = [
        (name, spent, cap)
        for name, spent, cap in (("daily", day, s.budget_daily_usd), ("monthly", month, s.budget_monthly_usd))
        if cap > 0 and spent >= cap
    ]
    for name, spent, cap, period in (
        ("daily", day, s.budget_daily_usd, day_start),
        ("monthly", month, s.budget_monthly_usd, month_start),
    ):
        mark = f"{name}@{period:.0f}"
        if cap > 0 and spent >= cap * s.budget_warn_fraction and mark not in state["warned"]:
            state["warned"].append(mark)
            data = _numbers(name, spent, cap, "spend reached the warning fraction of the cap")
            announce(cp, "cost.budget_warning", "budget", data, source="budget", occurrence=mark)
    if over and not state["exceeded"]:
        name, spent, cap = over[0]
        cp.queue.pause(s.job_queue)
        data = _numbers(name, spent, cap, "cap reached: job queue paused, new jobs wait")
        period = day_start if name == "daily" else month_start  # once per period and cap, whoever sees it
        occurrence = f"{name}@{period:.0f}:{cap:g}"
        announce(cp, "cost.budget_exceeded", "budget", data, source="budget", occurrence=occurrence)
    elif not over and state["exceeded"]:
        cp.queue.resume(s.job_queue)
        waiting = cp.store.list_by_status([JobStatus.QUEUED, JobStatus.STARTING])
        for job in waiting:  # their snoozed tasks may be far off: run them now
            redispatch_now(cp, job)
        log.warning(
            "budget available again (day $%.4f, month $%.4f): job queue resumed, %d waiting job(s) dispatched",
            day,
            month,
            len(waiting),
        )
    state.update(exceeded=bool(over), spent_day_usd=round(day, 6), spent_month_usd=round(month, 6), at=now)
    state["warned"] = state["warned"][-10:]
    cp.store.put_record(KIND, KEY, state)
    return {
        "spent_day_usd": state["spent_day_usd"],
        "spent_month_usd": state["spent_month_usd"],
        "budget_exceeded": state["exceeded"],
    }
