"""The jobs API's core: submit, read, cancel. No HTTP here: the enqueue function maps to it."""

from __future__ import annotations

import hashlib
import json
import logging
import re
from typing import Any

from pydantic import ValidationError

from shared.controlplane import ControlPlane
from shared.errors import Conflict, NotFound, QueueUnavailable, ValidationFailed
from shared.jobs.lifecycle import finish, push_dispatch
from shared.models import Job, JobCreate, new_job_id
from shared.observability.events import announce
from shared.security.callback_urls import check_callback_url
from shared.states import JobStatus
from shared.store.base import IdempotencyClaim

__all__ = ["cancel_job", "get_job", "parse_job_create", "submit_job", "validation_message"]

log = logging.getLogger("gpuq.intake")


def validation_message(exc: ValidationError) -> str:
    """One readable line per problem: ``field: what is wrong``."""
    parts = []
    for err in exc.errors():
        where = ".".join(str(p) for p in err["loc"]) or "body"
        if err["type"] == "extra_forbidden":
            parts.append(f"{where}: unknown field")
        elif err["type"] == "literal_error" and where == "type":
            parts.append("type: only 'llm' jobs are accepted")
        else:
            parts.append(f"{where}: {err['msg'].removeprefix('Value error, ')}")
    return "; ".join(parts)


def parse_job_create(body: Any) -> JobCreate:
    if not isinstance(body, dict):
        raise ValidationFailed("the body must be a JSON object", code="invalid_body")
    try:
        return JobCreate.model_validate(body)
    except ValidationError as exc:
        raise ValidationFailed(validation_message(exc)) from None


def _request_hash(request: JobCreate) -> str:
    canonical = request.model_dump(mode="json", exclude={"idempotency_key"})
    return hashlib.sha256(json.dumps(canonical, sort_keys=True).encode()).hexdigest()


def submit_job(
    cp: ControlPlane, owner: str, request: JobCreate, *, idempotency_header: str | None = None
) -> tuple[Job, bool]:
    """Store and queue a job. Returns ``(job, created)``; a repeated idempotency key returns the first job."""
    s = cp.settings
    if idempotency_header is not None and not re.fullmatch(r"[\x21-\x7e]{1,255}", idempotency_header):
        raise ValidationFailed(
            "Idempotency-Key header: 1 to 255 printable ASCII characters, no spaces", code="invalid_idempotency_key"
        )
    key = idempotency_header or request.idempotency_key
    if idempotency_header and request.idempotency_key and idempotency_header != request.idempotency_key:
        raise ValidationFailed("Idempotency-Key header and idempotency_key field differ")
    cp.pools.route(request.model)  # 422 model_not_served before anything is stored or started
    if request.callback_url:
        check_callback_url(request.callback_url, cp.allow_hosts(), resolve=False, allow_http=s.callback_allow_http)
    now = cp.clock.now()
    # Only an idempotency claim compares the request's hash: no key, no hash to compute.
    claim = IdempotencyClaim(owner=owner, key=key, request_hash=_request_hash(request)) if key else None
    job = Job(
        id=new_job_id(now),
        owner=owner,
        model=request.model,
        prompt=request.prompt,
        messages=request.messages,
        input=request.input,
        options=request.options,
        callback_url=request.callback_url,
        callback_events=request.callback_events,
        idempotency_key=key,
        request_hash=claim.request_hash if claim else None,
        metadata=request.metadata,
        max_queue_s=request.max_queue_s or s.default_max_queue_s,
        timeout_s=request.timeout_s or s.default_timeout_s,
        max_attempts=s.max_attempts,
        queued_at=now,
    )
    stored, created = cp.store.create(job, claim)
    if not created:
        log.info("job %s returned again for idempotency key", stored.id)
        return stored, False
    # Announced before its dispatch is queued: nothing can start the job before its queued event is kept.
    announce(cp, "job.queued", stored.id, _queued_data(cp, stored), source="intake")
    try:
        push_dispatch(cp, stored.id, 0)
    except QueueUnavailable:
        cp.store.delete(stored.id)  # the client got an error: nothing of this request is kept
        data = {"reason": "queue_unavailable", "attempt": 0, "deleted": True}
        announce(cp, "job.failed", stored.id, data, source="intake")
        raise
    return stored, True


def _queued_data(cp: ControlPlane, job: Job) -> dict[str, Any]:
    return {
        "model": job.model,
        "pool": cp.pools.route(job.model).name,
        "owner": job.owner,
        "max_queue_s": job.max_queue_s,
        "timeout_s": job.timeout_s,
    }


def get_job(cp: ControlPlane, owner: str, job_id: str) -> Job:
    job = cp.store.get(job_id)
    if job is None or job.owner != owner:
        raise NotFound(f"no job {job_id!r}", code="job_not_found")
    return job


def cancel_job(cp: ControlPlane, owner: str, job_id: str) -> Job:
    """Cancel a waiting or running job; a running one's agent stops at its next report."""
    job = get_job(cp, owner, job_id)
    if job.status.is_terminal():
        raise Conflict(f"job {job_id} is already {job.status.value}", code="job_finished")
    finished = finish(cp, job_id, JobStatus.CANCELLED, reason="cancelled_by_client")
    assert finished is not None
    if finished.status is not JobStatus.CANCELLED:
        raise Conflict(f"job {job_id} is already {finished.status.value}", code="job_finished")
    if job.status is JobStatus.RUNNING and job.instance_id:
        from shared.jobs.handover import cancel_on_agent

        cancel_on_agent(cp, finished)
    return finished
