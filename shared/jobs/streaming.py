"""Server-Sent Events of a job's output, served from the store so any function instance can serve it.

Events: ``status`` (when status or reason changes), ``output`` (id ``<attempt>-<seq>``, data
``{"text"}``), ``reset`` (a new attempt restarts the output), and a final ``done`` carrying the
terminal job. Reconnecting with ``Last-Event-ID`` resumes after that chunk: nothing lost, nothing
repeated.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Iterator
from typing import Any

from shared.controlplane import ControlPlane
from shared.models import Job

__all__ = ["parse_last_event_id", "sse_events"]

log = logging.getLogger("gpuq.stream")

POLL_S = 0.02
HEARTBEAT_S = 10.0


def parse_last_event_id(value: str | None) -> tuple[int, int]:
    """``"3-41"`` → (3, 41); anything else → start from the beginning."""
    attempt, _, seq = (value or "").partition("-")
    if attempt.isdigit() and seq.lstrip("-").isdigit():
        return int(attempt), int(seq)
    return 0, -1


def _event(name: str, data: Any, event_id: str | None = None) -> str:
    head = f"id: {event_id}\n" if event_id else ""
    return f"{head}event: {name}\ndata: {json.dumps(data, separators=(',', ':'))}\n\n"


def sse_events(cp: ControlPlane, job: Job, last_event_id: str | None, *, max_s: float = 86400.0) -> Iterator[str]:
    """The stream, ending with ``done`` — or with ``error`` if reading the store fails mid-stream."""
    try:
        yield from _events(cp, job, last_event_id, max_s)
    except Exception:
        log.exception("stream of job %s failed", job.id)
        yield _event(
            "error",
            {"error": {"code": "stream_failed", "message": "the stream broke; reconnect with Last-Event-ID to resume"}},
        )


def _events(cp: ControlPlane, job: Job, last_event_id: str | None, max_s: float) -> Iterator[str]:
    attempt, after = parse_last_event_id(last_event_id)
    seen_status: tuple[str, str | None] | None = None
    deadline = time.monotonic() + max_s
    last_sent = time.monotonic()
    yield "retry: 1000\n\n"
    while time.monotonic() < deadline:
        current = cp.store.get(job.id) or job
        if current.attempt and current.attempt != attempt:
            if attempt:
                yield _event("reset", {"attempt": current.attempt})
            attempt, after = current.attempt, -1
        # Chunks are read after the job, so a terminal job's last chunks are all in this read.
        for chunk in cp.store.read_chunks(job.id, attempt, after) if attempt else ():
            yield _event("output", {"text": chunk.text}, f"{attempt}-{chunk.seq}")
            after = chunk.seq
            last_sent = time.monotonic()
        status = (current.status.value, current.status_reason)
        if status != seen_status:
            seen_status = status
            yield _event("status", {"status": status[0], "status_reason": status[1]})
            last_sent = time.monotonic()
        if current.status.is_terminal():
            yield _event("done", current.public(output=None))
            return
        if time.monotonic() - last_sent > HEARTBEAT_S:
            yield ": keep-alive\n\n"
            last_sent = time.monotonic()
        time.sleep(POLL_S)
