"""Sends the reports of every job on this box to the control plane, batched: one POST per interval.

Each tick (``interval_s``) gathers what every job has pending (output chunks, its start, its outcome,
a heartbeat due every ``heartbeat_s`` to renew its lease) into one ``POST /v1/reports``, each entry
carrying its job's own token. For a job read through the control plane two things do not wait for
the tick: its first output (time to first token there) and its outcome. (A job streamed straight to
its caller reports only on ticks: its caller has the output already.) One request is in
flight at a time; whatever arrives meanwhile goes in the next one, so under load a request carries
many jobs and the cost per job falls. A failed request is retried with backoff; an outcome not
accepted within ``FINAL_REPORT_DEADLINE_S`` is given up (the control plane's lease re-drives the job).

A job handed over without ``reports_url`` (an older control plane) is reported on its own, to its
``report_url``, as before.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable

import aiohttp

from agent.reporter import JobReporter
from shared.backoff import Backoff, Delays
from shared.jobs.events import (
    AgentJob,
    Report,
    ReportAck,
    ReportBatch,
    ReportBatchAck,
    ReportEntry,
)

__all__ = ["ReportSender"]

log = logging.getLogger("gpuq.agent.reports")

FINAL_REPORT_DEADLINE_S = 600.0
REPORT_TIMEOUT = aiohttp.ClientTimeout(total=10)
MAX_BATCH_CHARS = 1_000_000  # output text per request; the rest goes in the next one at once
MAX_BATCH_JOBS = 500
# A failed request is retried after 0.2 s, doubling up to 30 s, each delay jittered to 0.5x-1.5x
# (every box on a control plane that comes back must not resend at once); it never gives up by itself.
RETRY = Backoff(first_s=0.2, factor=2.0, cap_s=30.0, jitter=(0.5, 1.5))


class ReportSender:
    def __init__(self, http: aiohttp.ClientSession, *, interval_s: float, heartbeat_s: float = 10.0) -> None:
        self._http = http
        self._interval_s = interval_s
        self._heartbeat_s = heartbeat_s
        self._jobs: dict[tuple[str, int], JobReporter] = {}
        self._urgent = asyncio.Event()
        self._has_jobs = asyncio.Event()
        self._loop = asyncio.get_running_loop()

    def register(self, job: AgentJob, *, on_cancel: Callable[[], None], eager: bool) -> JobReporter:
        reporter = JobReporter(job, on_cancel=on_cancel, wake=self._urgent.set, eager=eager, now=self._loop.time())
        self._jobs[(job.job_id, job.attempt)] = reporter
        self._has_jobs.set()  # the loop starts ticking (a new job alone sends nothing: its start rides along)
        return reporter

    async def run(self) -> None:
        retry: Delays | None = None  # the backoff of the failures in a row, if the last request failed
        while True:
            if not self._jobs:
                self._has_jobs.clear()
                await self._has_jobs.wait()
                continue  # a new job: its first report waits for a tick (or its first output, if eager)
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self._interval_s):
                    await self._urgent.wait()
            self._urgent.clear()
            try:
                more = await self._send_due()
                retry = None
            except Exception as exc:  # the loop must outlive any failure: every job's outcome goes through it
                retry = retry or RETRY.delays()
                await self._after_failure(exc, next(retry))
                more = True
            if more:
                self._urgent.set()

    async def _after_failure(self, exc: Exception, delay: float) -> None:
        expected = isinstance(exc, aiohttp.ClientError | TimeoutError | ValueError)
        log.log(
            logging.WARNING if expected else logging.ERROR,
            "progress reports not delivered (%s: %s); retrying in %.1fs",
            type(exc).__name__,
            exc,
            delay,
            exc_info=not expected,
        )
        self._give_up_overdue()
        await asyncio.sleep(delay)

    async def _send_due(self) -> bool:
        """Send one round; True when more is pending than one request could carry."""
        now = self._loop.time()
        batches: dict[str, list[tuple[JobReporter, Report, int]]] = {}
        chars, jobs, more = 0, 0, False
        for reporter in list(self._jobs.values()):
            if not reporter.due(now, self._heartbeat_s):
                continue
            size = reporter.pending_chars()
            if jobs and (jobs >= MAX_BATCH_JOBS or chars + size > MAX_BATCH_CHARS):
                more = True
                continue
            report, chunks = reporter.take()
            batches.setdefault(reporter.job.reports_url or "", []).append((reporter, report, chunks))
            chars, jobs = chars + size, jobs + 1
        for url, entries in batches.items():
            if url:
                await self._post_batch(url, entries)
            else:
                failures = [
                    r
                    for r in await asyncio.gather(*(self._post_one(*e) for e in entries), return_exceptions=True)
                    if r is not None
                ]
                if failures:
                    raise failures[0]
        return more

    async def _post_batch(self, url: str, entries: list[tuple[JobReporter, Report, int]]) -> None:
        batch = ReportBatch(
            reports=[
                ReportEntry(job_id=r.job.job_id, token=r.job.report_token, report=report) for r, report, _ in entries
            ]
        )
        async with self._http.post(
            url,
            data=batch.model_dump_json(exclude_defaults=True).encode(),
            headers={"Content-Type": "application/json"},
            timeout=REPORT_TIMEOUT,
        ) as response:
            body = await response.read()
            if response.status == 401:
                log.warning(
                    "control plane refused every report in a batch of %d (401); stopping those jobs", len(entries)
                )
                for reporter, _, _ in entries:
                    self._refused(reporter)
                return
            response.raise_for_status()
            acks = ReportBatchAck.model_validate_json(body).acks
        if len(acks) != len(entries):
            raise ValueError(f"{len(acks)} acknowledgements for {len(entries)} reports")
        now = self._loop.time()
        for (reporter, report, chunks), ack in zip(entries, acks, strict=True):
            if ack.error is not None:
                log.warning(
                    "job %s: control plane refused its report (%s); stopping", reporter.job.job_id, ack.error.code
                )
                self._refused(reporter)
            else:
                self._acked(reporter, report, chunks, ack.cancel, now)

    async def _post_one(self, reporter: JobReporter, report: Report, chunks: int) -> None:
        job = reporter.job
        async with self._http.post(
            job.report_url,
            data=report.model_dump_json(exclude_defaults=True).encode(),
            headers={"Authorization": f"Bearer {job.report_token}", "Content-Type": "application/json"},
            timeout=REPORT_TIMEOUT,
        ) as response:
            body = await response.read()
            if response.status in (401, 404):
                log.warning("job %s: control plane refused the report (%d); stopping", job.job_id, response.status)
                self._refused(reporter)
                return
            response.raise_for_status()
            ack = ReportAck.model_validate_json(body)
        self._acked(reporter, report, chunks, ack.cancel, self._loop.time())

    def _acked(self, reporter: JobReporter, report: Report, chunks: int, cancel: bool, now: float) -> None:
        final = report.outcome is not None
        reporter.sent(chunks, cancel=cancel, now=now, final=final)
        if final:
            self._forget(reporter)

    def _refused(self, reporter: JobReporter) -> None:
        reporter.refused()
        self._forget(reporter)

    def _forget(self, reporter: JobReporter) -> None:
        key = (reporter.job.job_id, reporter.job.attempt)
        if self._jobs.get(key) is reporter:
            del self._jobs[key]

    def abandon(self) -> None:
        """Shutting down: stop waiting for the reports still pending (their leases re-drive the jobs)."""
        for reporter in list(self._jobs.values()):
            if reporter.final is not None:
                log.warning(
                    "job %s: shutting down before its final report was accepted; the control plane's "
                    "lease re-drives the job",
                    reporter.job.job_id,
                )
            reporter.accepted.set()
        self._jobs.clear()

    def _give_up_overdue(self) -> None:
        now = self._loop.time()
        for reporter in list(self._jobs.values()):
            if reporter.final is not None and now - reporter.final_since > FINAL_REPORT_DEADLINE_S:
                log.error(
                    "job %s: final report not accepted after %.0fs: giving up; the control plane's lease "
                    "re-drives the job",
                    reporter.job.job_id,
                    FINAL_REPORT_DEADLINE_S,
                )
                reporter.accepted.set()
                self._forget(reporter)
