"""How an OpenAI request is answered once its job exists: held until done, or streamed as SSE.

- **Held** (``stream: false``): :func:`hold` follows the job up to ``GPUQ_OPENAI_HOLD_S``. Done in time,
  the answer is the OpenAI object (or the job's error in OpenAI's shape); not done, it is a ``503`` with
  ``Retry-After`` (at most 60 s, what the SDK honours) so the client's own retry re-attaches to the job.
- **Streamed** (``stream: true``): :func:`sse` answers at once and sends an SSE comment line every few
  seconds while the box starts (``: gpuq waiting: provisioning_instance 42s``, which SDKs ignore and a
  person with curl reads), then OpenAI's chunks, the usage chunk when asked, and ``data: [DONE]``.

A job whose output restarts (its box was lost and another attempt runs it) streams on from where the
client is: the characters already sent are skipped from the new attempt's output.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, Literal

from shared.controlplane import ControlPlane
from shared.errors import error_type
from shared.jobs.views import job_view
from shared.models import Job
from shared.openai import objects
from shared.openai.waiting import follow, waiting_line
from shared.states import JobStatus

__all__ = ["Answer", "Kind", "hold", "job_error", "sse", "still_waiting", "success_body"]

KEEPALIVE_S = 5.0


@dataclass(frozen=True, slots=True)
class Answer:
    status: int
    body: dict[str, Any]
    headers: dict[str, str]


def job_error(job: Job) -> tuple[int, dict[str, Any]]:
    """A job that ended without output, as an OpenAI error: its status and body."""
    status = {JobStatus.CANCELLED: 409, JobStatus.EXPIRED: 504}.get(job.status, 500)
    code = job.error.code if job.error else job.status.value
    message = job.error.message if job.error else f"the job ended {job.status.value}"
    return status, {"error": {"message": message, "type": error_type(status), "param": None, "code": code}}


Kind = Literal["chat", "completion", "embedding"]


def _finished(cp: ControlPlane, job: Job, kind: Kind, encoding: str) -> Answer:
    headers = {"x-gpuq-job-id": job.id, "x-should-retry": "false"}
    if job.status is not JobStatus.SUCCEEDED:
        status, body = job_error(job)
        return Answer(status, body, headers)
    return Answer(200, success_body(cp, job, kind, encoding), {"x-gpuq-job-id": job.id})


def success_body(cp: ControlPlane, job: Job, kind: Kind, encoding: str = "float") -> dict[str, Any]:
    """A succeeded job's OpenAI object: the completion, or the embedding list."""
    text = job_view(cp, job)["output"] or ""
    if kind == "embedding":
        vectors = json.loads(text or "{}").get("embeddings", [])
        prompt_tokens = (job.result.prompt_eval_count if job.result else None) or 0
        return objects.embedding_list(job.model, vectors, prompt_tokens, encoding)
    return objects.chat_completion(job, text) if kind == "chat" else objects.text_completion(job, text)


def hold(
    cp: ControlPlane, job: Job, *, hold_s: float, retry_after_s: float, kind: Kind, encoding: str = "float"
) -> Answer:
    """Wait up to ``hold_s`` for the job; its answer, or a 503 that tells the client when to come back."""
    last = job
    for step in follow(cp, job, deadline=time.monotonic() + hold_s):
        last = step.job
        if step.kind == "done":
            return _finished(cp, step.job, kind, encoding)
    return still_waiting(last, retry_after_s, cp.clock.now())


def still_waiting(job: Job, retry_after_s: float, now: float) -> Answer:
    """A 503 with ``Retry-After``: the job goes on; the same request (or its SDK retry) re-attaches."""
    message = f"the job is still {job.status.value} ({waiting_line(job, now)}); retry to re-attach to it"
    body = {"error": {"message": message, "type": "server_error", "param": None, "code": "still_waiting"}}
    headers = {
        "Retry-After": str(max(1, min(60, round(retry_after_s)))),
        "x-gpuq-job-id": job.id,
        "x-should-retry": "true",
    }
    return Answer(503, body, headers)


def _data(obj: Any) -> str:
    return f"data: {json.dumps(obj, separators=(',', ':'))}\n\n"


def sse(cp: ControlPlane, job: Job, *, chat: bool, include_usage: bool, max_s: float) -> Iterator[str]:
    """The whole SSE answer of a streaming request, ending with ``data: [DONE]``."""
    sent = 0  # characters the client has, across attempts
    position = 0  # characters of the current attempt seen
    last_line = -KEEPALIVE_S  # the first comment goes out at once: a person with curl sees why it waits
    first = True
    for step in follow(cp, job, deadline=time.monotonic() + max_s):
        if step.kind == "waiting" and time.monotonic() - last_line >= KEEPALIVE_S:
            yield f": gpuq waiting: {waiting_line(step.job, cp.clock.now())}\n\n"
            last_line = time.monotonic()
        elif step.kind == "reset":
            position = 0
            yield f": gpuq: attempt {step.job.attempt} restarts the output; {sent} characters already sent\n\n"
        elif step.kind == "text":
            new = step.text[max(0, sent - position) :]
            position += len(step.text)
            if new:
                sent += len(new)
                chunk = objects.chat_chunk(step.job, text=new, first=first) if chat else None
                yield _data(chunk or objects.completion_chunk(step.job, text=new))
                first = False
                last_line = time.monotonic()
        elif step.kind == "done":
            yield from _ending(step.job, chat=chat, include_usage=include_usage)
            return
    yield _data(
        {"error": {"message": "the stream timed out", "type": "server_error", "param": None, "code": "timeout"}}
    )
    yield "data: [DONE]\n\n"


def _ending(job: Job, *, chat: bool, include_usage: bool) -> Iterator[str]:
    if job.status is not JobStatus.SUCCEEDED:
        yield _data(job_error(job)[1])
    else:
        reason = objects.finish_reason(job)
        yield _data(objects.chat_chunk(job, finish=reason) if chat else objects.completion_chunk(job, finish=reason))
        if include_usage:
            yield _data(
                objects.chat_chunk(job, with_usage=True) if chat else objects.completion_chunk(job, with_usage=True)
            )
    yield "data: [DONE]\n\n"
