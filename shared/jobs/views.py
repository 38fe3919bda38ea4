"""Read-side helpers: a job as clients see it, with its output (inline, from the bucket, or as a URL)."""

from __future__ import annotations

from typing import Any

from shared.controlplane import ControlPlane
from shared.models import Job, iso

__all__ = ["job_view"]


def job_view(cp: ControlPlane, job: Job) -> dict[str, Any]:
    """``Job.public()`` with the output filled in. A finished output moved to the bucket is read from
    there; a very large one is given as a presigned ``output_url`` instead of text."""
    if job.output_ref is not None and cp.blobs is not None:
        view = cp.blobs.view(job.output_ref, now=cp.clock.now())
        urls = {"output_url": view.url, "output_url_expires_at": iso(view.url_expires_at)}
        return job.public(output=view.text) | urls
    if job.attempt == 0:
        return job.public(output=None)
    return job.public(output="".join(chunk.text for chunk in cp.store.read_chunks(job.id, job.attempt)))
