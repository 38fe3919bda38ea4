"""One job per OpenAI request, and the same job for its retries.

A client that gives ``Idempotency-Key`` gets the job of that key, as on ``POST /v1/jobs``. The stock
``openai`` SDK sends none, but it counts its own retries in ``x-stainless-retry-count`` and resends the
identical body; so the first try (count 0) notes its job under a hash of the caller and the body
(record ``openai_try/<hash>``), and a retry (count ≥ 1) of the same body within ``RETRY_WINDOW_S``
re-attaches to that job instead of starting a second generation.
"""

from __future__ import annotations

import hashlib
import logging
from typing import Any

from shared.controlplane import ControlPlane
from shared.errors import NotFound, ValidationFailed
from shared.jobs.intake import parse_job_create, submit_job
from shared.models import Job

__all__ = ["RETRY_WINDOW_S", "TRY_KIND", "submit_or_attach"]

log = logging.getLogger("gpuq.openai")

TRY_KIND = "openai_try"
RETRY_WINDOW_S = 3600.0


def _retry_count(value: str | None) -> int:
    return int(value) if value and value.isdigit() else 0


def submit_or_attach(
    cp: ControlPlane,
    owner: str,
    job_body: dict[str, Any],
    raw_body: bytes,
    *,
    idempotency_key: str | None,
    retry_count: str | None,
) -> Job:
    """The job answering this request: new, or the one an earlier try of it started."""
    request = parse_job_create(job_body)
    try:
        cp.pools.route(request.model)
    except ValidationFailed as exc:  # OpenAI answers an unknown model with 404 model_not_found
        raise NotFound(exc.message, code="model_not_found", param="model") from None
    if idempotency_key:
        job, _ = submit_job(cp, owner, request, idempotency_header=idempotency_key)
        return job
    key = hashlib.sha256(owner.encode() + b"\x00" + raw_body).hexdigest()
    now = cp.clock.now()
    if _retry_count(retry_count) > 0:
        noted = cp.store.get_record(TRY_KIND, key)
        earlier = cp.store.get(str(noted["job_id"])) if noted and now - float(noted["at"]) < RETRY_WINDOW_S else None
        if earlier is not None and earlier.owner == owner:
            log.info("job %s re-attached to retry %s of its request", earlier.id, retry_count)
            return earlier
    job, _ = submit_job(cp, owner, request)
    cp.store.put_record(TRY_KIND, key, {"job_id": job.id, "at": now})
    return job
