"""Progress and result reports to the control plane, batched off the hot path.

Chunks are appended to a buffer (no I/O per token); a flusher sends whatever accumulated at most
every ``interval_s``. The "started" report rides with the first chunk: at once for a job whose
output is read through the control plane (``eager_first``, for a short time to first token there),
at the first interval for a job streamed straight back to its caller (no POST competes with its
first tokens). A report goes out at least every ``heartbeat_s`` while the job runs, renewing its
lease even while no token comes. The final report is retried until the control plane takes it, with
backoff, and is shielded from cancellation.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from collections.abc import Callable

import aiohttp

from shared.events import AgentJob, Report, ReportAck, ReportChunk
from shared.models import JobError, JobResult

__all__ = ["Reporter"]

log = logging.getLogger("gpuq.agent.reporter")

FINAL_REPORT_DEADLINE_S = 600.0
REPORT_TIMEOUT = aiohttp.ClientTimeout(total=10)


class Reporter:
    def __init__(self, http: aiohttp.ClientSession, job: AgentJob, *, interval_s: float,
                 on_cancel: Callable[[], None], eager_first: bool = True, heartbeat_s: float = 10.0) -> None:
        self._http = http
        self._job = job
        self._interval_s = interval_s
        self._on_cancel = on_cancel
        self._buffer: list[str] = []
        self._unacked: list[ReportChunk] = []  # sent, not yet acknowledged: resent as they were
        self._seq = 0
        self._started = False
        self._started_sent = False
        self._wake = asyncio.Event()
        self._closed = False
        self._eager_first = eager_first
        self._heartbeat_s = heartbeat_s
        self._flusher: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._started = True
        self._flusher = asyncio.create_task(self._flush_loop())

    def add(self, text: str) -> None:
        self._buffer.append(text)
        if not self._wake.is_set() and (self._eager_first or self._started_sent):
            self._wake.set()

    def _take(self) -> list[ReportChunk]:
        """Unacknowledged chunks plus the buffer as one new chunk (same seq → same text, always)."""
        if self._buffer:
            self._unacked.append(ReportChunk(seq=self._seq, text="".join(self._buffer)))
            self._buffer.clear()
            self._seq += 1
        return list(self._unacked)

    async def _send(self, report: Report) -> ReportAck:
        async with self._http.post(
            self._job.report_url, data=report.model_dump_json(exclude_defaults=True).encode(),
            headers={"Authorization": f"Bearer {self._job.report_token}", "Content-Type": "application/json"},
            timeout=REPORT_TIMEOUT,
        ) as response:
            body = await response.read()
            if response.status in (401, 404):
                log.warning("job %s: control plane refused the report (%d); stopping", self._job.job_id,
                            response.status)
                return ReportAck.model_validate({"status": "failed", "cancel": True})
            response.raise_for_status()
            return ReportAck.model_validate_json(body)

    async def _flush_loop(self) -> None:
        loop = asyncio.get_running_loop()
        last_sent = loop.time()
        while not self._closed:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self._interval_s)
            self._wake.clear()
            if self._closed:
                return
            chunks = self._take()
            if not chunks and self._started_sent and loop.time() - last_sent < self._heartbeat_s:
                continue
            last_sent = loop.time()
            report = Report(attempt=self._job.attempt, started=not self._started_sent, chunks=chunks)
            try:
                ack = await self._send(report)
                self._started_sent = True
                self._unacked.clear()
            except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
                log.info("job %s: progress report failed (%s); will resend", self._job.job_id, type(exc).__name__)
                ack = None
                self._wake.set()
            if ack is not None and ack.cancel:
                self._on_cancel()
            if chunks or ack is None:
                await asyncio.sleep(self._interval_s)

    async def finish(self, outcome: str, *, result: JobResult | None = None, error: JobError | None = None) -> None:
        """Send everything left with the outcome, retrying until the control plane accepts it."""
        self._closed = True
        self._wake.set()
        if self._flusher is not None:
            # The flusher's errors were logged already; what matters now is the final report.
            with contextlib.suppress(Exception):
                await self._flusher
        report = Report(attempt=self._job.attempt, started=not self._started_sent, chunks=self._take(),
                        outcome=outcome, result=result, error=error)
        delay = 0.2
        loop = asyncio.get_running_loop()
        deadline = loop.time() + FINAL_REPORT_DEADLINE_S
        while True:
            try:
                await self._send(report)
                return
            except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
                if loop.time() > deadline:
                    log.error("job %s: final report not accepted after %.0fs: giving up (%s); the reaper "
                              "re-drives the job", self._job.job_id, FINAL_REPORT_DEADLINE_S, exc)
                    return
                log.warning("job %s: final report failed (%s); retrying in %.1fs", self._job.job_id,
                            type(exc).__name__, delay)
                await asyncio.sleep(delay * (0.5 + random.random()))
                delay = min(delay * 2, 30.0)
