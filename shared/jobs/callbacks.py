"""Signed callback delivery, as its own queue task, retried with exponential backoff.

Each event has a stable id (``webhook-id``) so a receiver can de-duplicate; every try is recorded
on the job (``callback.deliveries``); an event that exhausted its tries is listed in
``callback.failed`` (the dead letters), from where it can be re-sent. Deliveries run on their own
queue, so a slow receiver never delays a job's dispatch.
"""

from __future__ import annotations

import json
import logging
from typing import Literal, NamedTuple

import httpx

from shared.backoff import Backoff
from shared.controlplane import ControlPlane
from shared.errors import ValidationFailed
from shared.jobs.tasks import CallbackTask, push_task
from shared.jobs.views import job_view
from shared.models import CallbackDelivery, Job
from shared.security.callback_urls import check_callback_url, post_pinned
from shared.security.webhooks import sign_webhook

__all__ = ["deliver_callback", "event_id_for", "requeue_pending", "resend_failed", "schedule_callback"]

log = logging.getLogger("gpuq.callbacks")

MAX_BACKOFF_S = 3600.0
# Jitter spreads the retries of many callbacks that failed together (a receiver that was down): each waits
# between half of its doubling delay and all of it, so none waits longer than before.
RETRY_JITTER = (0.5, 1.0)


def event_id_for(job: Job, event_type: str, suffix: str = "") -> str:
    return f"evt_{job.id}_{job.attempt}_{event_type.removeprefix('job.')}{suffix}"


def schedule_callback(cp: ControlPlane, job: Job, subscription: str, event_type: str, suffix: str = "") -> None:
    """Queue one delivery of ``event_type`` if the job asked for ``subscription`` events."""
    if not job.callback_url or subscription not in job.callback_events:
        return
    push_task(cp, CallbackTask.of(job_id=job.id, event_id=event_id_for(job, event_type, suffix), event_type=event_type))


def _event_type_of(event_id: str) -> str:
    return "job." + event_id.rsplit("_", 1)[1].split(".", 1)[0]


def requeue_pending(cp: ControlPlane, job: Job) -> int:
    """Backstop: queue again events recorded as pending that no delivery try ever reached."""
    tried = {d.event_id for d in job.callback.deliveries}
    count = 0
    for event_id in job.callback.pending:
        if event_id not in tried:
            push_task(cp, CallbackTask.of(job_id=job.id, event_id=event_id, event_type=_event_type_of(event_id)))
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
        push_task(cp, CallbackTask.of(job_id=job.id, event_id=event_id, event_type=_event_type_of(event_id)))
    return events


def _body(cp: ControlPlane, job: Job, event_type: str) -> bytes:
    data = job_view(cp, job)
    return json.dumps({"type": event_type, "data": data}, separators=(",", ":")).encode()


class _Try(NamedTuple):
    status_code: int | None
    error: str | None  # None: delivered
    try_number: int  # the try's number; the last one for a target that is never retried


def _retry_policy(cp: ControlPlane) -> Backoff:
    return Backoff(first_s=cp.settings.callback_backoff_s, factor=2.0, cap_s=MAX_BACKOFF_S, jitter=RETRY_JITTER)


def deliver_callback(cp: ControlPlane, job_id: str, event_id: str, event_type: str, try_number: int) -> str:
    """One delivery try. Returns the outcome; schedules the next try itself on failure."""
    job = cp.store.get(job_id)
    if job is None or not job.callback_url:
        return "no_target"
    if event_id in job.callback.delivered or event_id in job.callback.failed:
        return "already_done"
    done = _try_once(cp, job, job.callback_url, event_id, event_type, try_number)
    record = CallbackDelivery(
        event_id=event_id,
        type=event_type,
        try_number=done.try_number,
        at=cp.clock.now(),
        status_code=done.status_code,
        error=done.error,
        outcome=_outcome(done, cp.settings.callback_max_tries),
    )
    if record.outcome == "retrying":
        delay = _retry_policy(cp).after_try(done.try_number)
        next_try = CallbackTask.of(
            job_id=job_id, event_id=event_id, event_type=event_type, try_number=done.try_number + 1
        )
        push_task(cp, next_try, delay_s=delay)
    _record(cp, job_id, record)
    log.info(
        "callback %s for job %s try %d: %s%s",
        event_type,
        job_id,
        done.try_number,
        record.outcome,
        f" ({done.error})" if done.error else "",
    )
    return record.outcome


def _try_once(cp: ControlPlane, job: Job, url: str, event_id: str, event_type: str, try_number: int) -> _Try:
    """POST the signed event once; what the receiver answered, or why it could not be reached."""
    s = cp.settings
    try:
        pinned = check_callback_url(url, cp.allow_hosts(), resolve=True, allow_http=s.callback_allow_http)
        body = _body(cp, job, event_type)
        headers = sign_webhook(s.webhook_secret, event_id, int(cp.clock.now()), body) if s.webhook_secret else {}
        headers["Content-Type"] = "application/json"
        headers["User-Agent"] = "gpuq-webhooks/1"
        response = post_pinned(cp.http, url, pinned, body, headers, timeout_s=s.callback_timeout_s)
    except ValidationFailed as exc:
        return _Try(None, exc.message, s.callback_max_tries)  # a forbidden target is never retried
    except httpx.HTTPError as exc:
        return _Try(None, f"{type(exc).__name__}: {exc}"[:300], try_number)
    status_code = response.status_code
    error = None if 200 <= status_code < 300 else f"receiver answered {status_code}"
    return _Try(status_code, error, try_number)


def _outcome(done: _Try, max_tries: int) -> Literal["delivered", "retrying", "failed"]:
    if done.error is None:
        return "delivered"
    return "failed" if done.try_number >= max_tries else "retrying"


def _record(cp: ControlPlane, job_id: str, record: CallbackDelivery) -> None:
    """Note the try on the job; a final outcome takes the event off the pending list."""
    event_id, outcome = record.event_id, record.outcome

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
