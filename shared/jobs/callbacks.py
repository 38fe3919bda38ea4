"""Signed callback delivery, as its own queue task, retried with exponential backoff.

Each event has a stable id (``webhook-id``) so a receiver can de-duplicate; every try is recorded
on the job (``callback.deliveries``); an event that exhausted its tries is listed in
``callback.failed`` (the dead letters), from where it can be re-sent. Deliveries run on their own
queue, so a slow receiver never delays a job's dispatch.
"""

from __future__ import annotations

import json
import logging

import httpx

from shared.controlplane import ControlPlane
from shared.errors import ValidationFailed
from shared.jobs.views import job_view
from shared.models import CallbackDelivery, Job
from shared.security.callback_urls import check_callback_url
from shared.security.webhooks import sign_webhook

__all__ = ["deliver_callback", "event_id_for", "requeue_pending", "resend_failed", "schedule_callback"]

log = logging.getLogger("gpuq.callbacks")

MAX_BACKOFF_S = 3600.0


def event_id_for(job: Job, event_type: str, suffix: str = "") -> str:
    return f"evt_{job.id}_{job.attempt}_{event_type.removeprefix('job.')}{suffix}"


def schedule_callback(cp: ControlPlane, job: Job, subscription: str, event_type: str, suffix: str = "") -> None:
    """Queue one delivery of ``event_type`` if the job asked for ``subscription`` events."""
    if not job.callback_url or subscription not in job.callback_events:
        return
    cp.queue.push(
        cp.settings.callback_queue,
        {
            "kind": "callback",
            "job_id": job.id,
            "event_id": event_id_for(job, event_type, suffix),
            "type": event_type,
            "try": 1,
        },
    )


def _event_type_of(event_id: str) -> str:
    return "job." + event_id.rsplit("_", 1)[1].split(".", 1)[0]


def requeue_pending(cp: ControlPlane, job: Job) -> int:
    """Backstop: queue again events recorded as pending that no delivery try ever reached."""
    tried = {d.event_id for d in job.callback.deliveries}
    count = 0
    for event_id in job.callback.pending:
        if event_id not in tried:
            cp.queue.push(
                cp.settings.callback_queue,
                {
                    "kind": "callback",
                    "job_id": job.id,
                    "event_id": event_id,
                    "type": _event_type_of(event_id),
                    "try": 1,
                },
            )
            count += 1
    return count


def resend_failed(cp: ControlPlane, job: Job) -> list[str]:
    """Take the job's dead-lettered events off the dead-letter list and deliver them again from try 1."""
    events = list(job.callback.failed)

    def mutate(current: Job) -> Job:
        current.callback.failed = [e for e in current.callback.failed if e not in events]
        current.callback.pending.extend(e for e in events if e not in current.callback.pending)
        return current

    cp.store.modify(job.id, mutate)
    for event_id in events:
        cp.queue.push(
            cp.settings.callback_queue,
            {"kind": "callback", "job_id": job.id, "event_id": event_id, "type": _event_type_of(event_id), "try": 1},
        )
    return events


def _post(cp: ControlPlane, url: str, pinned: str | None, body: bytes, headers: dict[str, str]) -> httpx.Response:
    """POST, connecting to the address that was checked (``pinned``), never following redirects."""
    timeout = cp.settings.callback_timeout_s
    if pinned is None:
        return cp.http.post(url, content=body, headers=headers, timeout=timeout)
    parts = httpx.URL(url)
    host = f"[{pinned}]" if ":" in pinned else pinned
    target = parts.copy_with(host=host.strip("[]"))
    headers = {**headers, "Host": parts.netloc.decode()}
    return cp.http.post(target, content=body, headers=headers, timeout=timeout, extensions={"sni_hostname": parts.host})


def _body(cp: ControlPlane, job: Job, event_type: str) -> bytes:
    data = job_view(cp, job)
    return json.dumps({"type": event_type, "data": data}, separators=(",", ":")).encode()


def deliver_callback(cp: ControlPlane, job_id: str, event_id: str, event_type: str, try_number: int) -> str:
    """One delivery try. Returns the outcome; schedules the next try itself on failure."""
    job = cp.store.get(job_id)
    if job is None or not job.callback_url:
        return "no_target"
    if event_id in job.callback.delivered or event_id in job.callback.failed:
        return "already_done"
    s = cp.settings
    status_code: int | None = None
    error: str | None = None
    try:
        pinned = check_callback_url(job.callback_url, cp.allow_hosts(), resolve=True, allow_http=s.callback_allow_http)
        body = _body(cp, job, event_type)
        headers = sign_webhook(s.webhook_secret, event_id, int(cp.clock.now()), body) if s.webhook_secret else {}
        headers["Content-Type"] = "application/json"
        headers["User-Agent"] = "gpuq-webhooks/1"
        response = _post(cp, job.callback_url, pinned, body, headers)
        status_code = response.status_code
        if not 200 <= status_code < 300:
            error = f"receiver answered {status_code}"
    except ValidationFailed as exc:
        error, try_number = exc.message, s.callback_max_tries  # a forbidden target is never retried
    except httpx.HTTPError as exc:
        error = f"{type(exc).__name__}: {exc}"[:300]

    if error is None:
        outcome = "delivered"
    elif try_number >= s.callback_max_tries:
        outcome = "failed"
    else:
        outcome = "retrying"
    record = CallbackDelivery(
        event_id=event_id,
        type=event_type,
        try_number=try_number,
        at=cp.clock.now(),
        status_code=status_code,
        error=error,
        outcome=outcome,
    )
    if outcome == "retrying":
        delay = min(s.callback_backoff_s * 2 ** (try_number - 1), MAX_BACKOFF_S)
        cp.queue.push(
            s.callback_queue,
            {"kind": "callback", "job_id": job_id, "event_id": event_id, "type": event_type, "try": try_number + 1},
            delay_s=delay,
        )

    def mutate(current: Job) -> Job:
        current.callback.deliveries.append(record)
        del current.callback.deliveries[:-50]
        if outcome != "retrying" and event_id in current.callback.pending:
            current.callback.pending.remove(event_id)
        if outcome == "delivered":
            current.callback.delivered.append(event_id)
        elif outcome == "failed":
            current.callback.failed.append(event_id)
        return current

    cp.store.modify(job_id, mutate)
    log.info(
        "callback %s for job %s try %d: %s%s", event_type, job_id, try_number, outcome, f" ({error})" if error else ""
    )
    return outcome
