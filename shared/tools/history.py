"""A job's history as ``gpuq logs`` prints it, rebuilt from the job the API returns: when it was queued,
started and finished, and every callback delivery, oldest first."""

from __future__ import annotations

from typing import Any

__all__ = ["job_history"]


def job_history(job: dict[str, Any]) -> list[dict[str, Any]]:
    events: list[dict[str, Any]] = [{"at": job.get("queued_at"), "event": "queued", "detail": job.get("model", "")}]
    if job.get("started_at"):
        where = f"on {job.get('instance_id')}" if job.get("instance_id") else ""
        events.append({"at": job["started_at"], "event": "started", "detail": f"{where} attempt {job.get('attempts')}"})
    for delivery in (job.get("callback") or {}).get("deliveries", []):
        status = delivery.get("status_code") or delivery.get("error") or ""
        detail = f"{delivery.get('type')} try {delivery.get('try_number')}: {delivery.get('outcome')} {status}"
        events.append({"at": delivery.get("at"), "event": "callback", "detail": detail.strip()})
    if job.get("finished_at"):
        error = job.get("error") or {}
        detail = f"{job.get('status_reason') or ''} {error.get('message', '')}".strip()
        events.append({"at": job["finished_at"], "event": job["status"], "detail": detail})
    elif job.get("status") not in ("queued",):
        events.append({"at": None, "event": job["status"], "detail": job.get("status_reason") or ""})
    return sorted(events, key=lambda e: (e["at"] is None, e["at"] or ""))
