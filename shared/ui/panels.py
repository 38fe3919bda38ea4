"""The dashboard's panels as HTML fragments, rendered from the store: the page embeds them, and its script
swaps in fresh ones from ``GET /ui/panels``. Every value from outside is escaped here.

- **jobs**: the caller's waiting and running jobs, then its latest finished ones: status, *why it waits*
  (the job's ``status_reason`` in words), attempts, time waited or run, box, cost, and buttons (watch the
  output, cancel, resend the callback).
- **fleet**: every box of every pool, with state, uptime, running jobs, $/h and its session's cost so far.
- **cost**: what the boxes cost this UTC day and month against the budgets, and the last 24 hours.
"""

from __future__ import annotations

import html
from collections.abc import Iterable
from typing import Any

from shared.boxes.listing import list_instances
from shared.controlplane import ControlPlane
from shared.models import Job
from shared.money.budget import spend_usd
from shared.money.costreport import cost_report
from shared.states import JobStatus

__all__ = ["FINISHED_SHOWN", "REASONS", "cost_panel", "duration", "fleet_panel", "jobs_panel", "panels", "reason_text"]

FINISHED_SHOWN = 10
"""Finished jobs the jobs panel shows (the latest)."""
_LISTED = 1000  # jobs read per status group (the store lists oldest first, like the metrics do)
_WAITING = (JobStatus.QUEUED, JobStatus.STARTING, JobStatus.RUNNING)
_FINISHED = (JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.CANCELLED, JobStatus.EXPIRED)

REASONS: dict[str, str] = {
    "waiting_for_dispatch": "accepted; its dispatch is on the way",
    "provisioning_instance": "a GPU box is starting for it",
    "starting_instance": "its box is booting; the agent is not listening yet",
    "loading_model": "its box is loading the model",
    "waiting_for_slot": "every box of its pool is busy",
    "budget_exceeded": "the spending cap is reached: it runs when the period rolls over or the cap is raised",
    "instance_stopping": "its box is stopping; it runs on the next one",
    "no_capacity": "no GPU offer matches what its box needs",
    "instance_restart_failed": "its stopped box could not restart (the GPU was rented meanwhile)",
    "retrying_after_agent_failure": "the agent failed it; it is tried again",
    "agent_busy": "the agent is busy",
    "handed_to_agent": "handed to the agent",
    "generating": "generating",
    "max_queue_s_exceeded": "it waited longer than its max_queue_s",
    "cancelled_by_client": "cancelled",
}
"""Each status reason the control plane sets, in words (an unknown one is shown as it is)."""


def _e(value: object) -> str:
    return html.escape(str(value), quote=True)


def reason_text(reason: str | None) -> str:
    if not reason:
        return ""
    return REASONS.get(reason, reason.replace("_", " "))


def duration(seconds: float | None) -> str:
    """``75`` → ``1m 15s``; ``None`` → an em dash."""
    if seconds is None:
        return "—"
    total = max(0, int(seconds))
    hours, rest = divmod(total, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours}h {minutes:02d}m"
    return f"{minutes}m {secs:02d}s" if minutes else f"{secs}s"


def _usd(value: float | None) -> str:
    return "—" if value is None else f"${value:,.4f}" if value < 1 else f"${value:,.2f}"


def _owned(cp: ControlPlane, owner: str) -> tuple[list[Job], list[Job]]:
    waiting = [j for j in cp.store.list_by_status(_WAITING, limit=_LISTED) if j.owner == owner]
    finished = [j for j in cp.store.list_by_status(_FINISHED, limit=_LISTED) if j.owner == owner]
    finished.sort(key=lambda j: j.finished_at or j.queued_at, reverse=True)
    return waiting, finished[:FINISHED_SHOWN]


def _timing(job: Job, now: float) -> str:
    if job.started_at is None:
        return f"waited {duration((job.finished_at or now) - job.queued_at)}"
    return f"ran {duration((job.finished_at or now) - job.started_at)}"


def _buttons(job: Job) -> str:
    jid = _e(job.id)
    out = [f'<button type="button" data-action="watch" data-job="{jid}">Watch</button>']
    if not job.status.is_terminal():
        out.append(f'<button type="button" data-action="cancel" data-job="{jid}">Cancel</button>')
    elif job.callback_url:
        out.append(f'<button type="button" data-action="resend" data-job="{jid}">Resend callback</button>')
    return "".join(out)


def _job_row(job: Job, now: float) -> str:
    status = job.status.value
    why = reason_text(job.status_reason)
    return (
        f'<tr class="job" data-job="{_e(job.id)}" data-status="{_e(status)}">'
        f'<td class="id"><code>{_e(job.id)}</code></td><td>{_e(job.model)}</td>'
        f'<td><span class="status status-{_e(status)}">{_e(status)}</span></td>'
        f'<td class="why" title="{_e(job.status_reason or "")}">{_e(why)}</td>'
        f"<td>{job.attempt}</td><td>{_e(_timing(job, now))}</td><td>{_e(job.instance_id or '—')}</td>"
        f'<td class="num">{_e(_usd(job.cost_usd))}</td><td class="actions">{_buttons(job)}</td></tr>'
    )


def _table(head: Iterable[str], rows: list[str], empty: str) -> str:
    if not rows:
        return f'<p class="empty">{_e(empty)}</p>'
    cells = "".join(f"<th>{_e(h)}</th>" for h in head)
    return f"<table><thead><tr>{cells}</tr></thead><tbody>{''.join(rows)}</tbody></table>"


def jobs_panel(cp: ControlPlane, owner: str) -> str:
    """The caller's jobs: every waiting or running one, then the latest finished ones."""
    now = cp.clock.now()
    waiting, finished = _owned(cp, owner)
    head = ("job", "model", "status", "why", "attempts", "time", "box", "cost", "")
    return (
        f'<h3>Waiting and running <span class="count">{len(waiting)}</span></h3>'
        + _table(head, [_job_row(j, now) for j in waiting], "No job waits or runs.")
        + f'<h3>Latest finished <span class="count">{len(finished)}</span></h3>'
        + _table(head, [_job_row(j, now) for j in finished], "No job has finished yet.")
    )


def _box_row(box: dict[str, Any], now: float) -> str:
    up = box["state"] != "stopped" and box.get("started_at") is not None
    uptime = duration(now - float(box["started_at"])) if up else "—"
    running = len(box["running_jobs"])
    why = box.get("start_reason") or {}  # the scale rule's decision: {"reason": <words>, its numbers...}
    return (
        f'<tr class="box" data-box="{_e(box["id"])}" data-state="{_e(box["state"])}">'
        f"<td><code>{_e(box['id'])}</code></td>"
        f'<td><span class="state state-{_e(box["state"])}">{_e(box["state"])}</span></td>'
        f"<td>{_e(uptime)}</td><td>{running} / {_e(box.get('slots', '?'))}</td>"
        f'<td class="num">{_e(_usd(float(box["price_per_hour"])))}/h</td>'
        f'<td class="num">{_e(_usd(float(box["cost_usd"])))}</td>'
        f"<td>{_e(why.get('reason', '') if up else '')}</td></tr>"
    )


def fleet_panel(cp: ControlPlane) -> str:
    """Every box, by pool: state, uptime, running jobs, $/h, the cost of its current session."""
    now = cp.clock.now()
    boxes = list_instances(cp)["instances"]
    parts = []
    for pool in cp.pools:
        rows = [_box_row(b, now) for b in boxes if b["pool"] == pool.name]
        models = ", ".join(pool.models)
        parts.append(
            f'<section class="pool" data-pool="{_e(pool.name)}"><h3>{_e(pool.name)} '
            f"<small>{_e(pool.provider)} · {_e(models)} · idle policy {_e(pool.idle_policy)}</small></h3>"
            + _table(("box", "state", "uptime", "jobs", "price", "cost so far", "started for"), rows, "No box.")
            + "</section>"
        )
    return "".join(parts)


def _budget_row(label: str, spent: float, cap: float) -> str:
    if cap <= 0:
        gauge = '<span class="muted">no cap</span>'
    else:
        share = min(spent / cap, 1.0)
        gauge = (
            f'<meter min="0" max="1" low="0.8" high="0.99" optimum="0" value="{share:.4f}"></meter> '
            f"<span>{share:.0%} of {_e(_usd(cap))}</span>"
        )
    return f'<tr><th scope="row">{_e(label)}</th><td class="num">{_e(_usd(spent))}</td><td>{gauge}</td></tr>'


def cost_panel(cp: ControlPlane) -> str:
    """This UTC day's and month's spend against ``GPUQ_BUDGET_DAILY_USD`` / ``_MONTHLY_USD``, then 24 h totals."""
    s = cp.settings
    day, month = spend_usd(cp, cp.clock.now())
    report = cost_report(cp, 86400.0)
    return (
        '<table class="budget"><tbody>'
        + _budget_row("today (UTC)", day, s.budget_daily_usd)
        + _budget_row("this month", month, s.budget_monthly_usd)
        + "</tbody></table>"
        + '<p class="totals">Last 24 h: '
        f"{_e(_usd(report['billed_usd']))} for {report['billed_gpu_hours']:.3f} GPU-hours, "
        f"{report['cold_starts']} cold start(s), {report['idle_fraction']:.0%} of billed time idle.</p>"
    )


def panels(cp: ControlPlane, owner: str) -> dict[str, str]:
    """Every refreshed panel, by the id of the element the page swaps it into."""
    return {"jobs": jobs_panel(cp, owner), "fleet": fleet_panel(cp), "cost": cost_panel(cp)}
