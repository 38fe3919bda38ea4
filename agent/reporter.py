"""One job attempt's progress, kept until the control plane has it: output chunks, started, outcome.

The runner appends text (no I/O per token); :class:`agent.report_sender.ReportSender` takes what is
pending from every job on the box and sends it in one request. A chunk, once cut, keeps its ``seq`` and
its text and is resent as it was until acknowledged, so a resent report changes nothing twice.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from shared.jobs.events import AgentJob, Report, ReportChunk
from shared.models import JobError, JobResult

__all__ = ["JobReporter"]


class JobReporter:
    def __init__(
        self, job: AgentJob, *, on_cancel: Callable[[], None], wake: Callable[[], None], eager: bool, now: float
    ) -> None:
        self.job = job
        self._on_cancel = on_cancel
        self._wake = wake
        # Somebody reads this job through the control plane: its first output and its outcome go at once.
        # (A job streamed straight to its caller waits for the next tick: the caller has it already.)
        self._eager = eager
        self._first = eager
        self._buffer: list[str] = []
        self._unacked: list[ReportChunk] = []
        self._seq = 0
        self._started_sent = False
        self._reason: str | None = None  # what the attempt does before its output, until it is sent
        self._reason_taken: str | None = None
        self.last_sent = now
        self.final: Report | None = None
        self.final_since = 0.0
        self.accepted = asyncio.Event()  # set when the final report is acknowledged (or given up on)

    def note(self, reason: str) -> None:
        """Tell the control plane what the attempt is doing (``pulling_model 43%``) at the next report."""
        if reason != self._reason:
            self._reason = reason
            self._wake()

    def add(self, texts: list[str]) -> None:
        self._buffer.extend(texts)
        if self._first:
            self._first = False  # one urgent wake per job, not one per token
            self._wake()

    def finish(self, outcome: str, *, result: JobResult | None, error: JobError | None, now: float) -> None:
        self.final = Report(attempt=self.job.attempt, outcome=outcome, result=result, error=error)
        self.final_since = now
        if self._eager:
            self._wake()

    def due(self, now: float, heartbeat_s: float) -> bool:
        """Something to send: output, the start, the outcome, or a heartbeat that renews the lease."""
        return (
            bool(self._buffer or self._unacked)
            or self._reason is not None
            or not self._started_sent
            or self.final is not None
            or now - self.last_sent >= heartbeat_s
        )

    def take(self) -> tuple[Report, int]:
        """The report to send now, and how many unacknowledged chunks it carries (see :meth:`sent`)."""
        if self._buffer:
            self._unacked.append(ReportChunk(seq=self._seq, text="".join(self._buffer)))
            self._buffer.clear()
            self._seq += 1
        final = self.final
        report = Report.model_construct(  # our own fields, valid already: no validation per report
            attempt=self.job.attempt,
            started=not self._started_sent,
            chunks=list(self._unacked),
            outcome=final.outcome if final else None,
            result=final.result if final else None,
            error=final.error if final else None,
            status_reason=self._reason,
        )
        self._reason_taken = self._reason
        return report, len(self._unacked)

    def sent(self, chunks: int, *, cancel: bool, now: float, final: bool) -> None:
        """The control plane acknowledged a report from :meth:`take`."""
        del self._unacked[:chunks]
        if self._reason == self._reason_taken:
            self._reason = None  # sent; a newer one noted meanwhile goes with the next report
        self._started_sent = True
        self.last_sent = now
        if cancel and not final:
            self._on_cancel()
        if final:
            self.accepted.set()

    def refused(self) -> None:
        """The control plane will never take this job's reports (token refused, job gone): stop it."""
        self._on_cancel()
        self.accepted.set()

    def pending_chars(self) -> int:
        return sum(map(len, self._buffer)) + sum(len(c.text) for c in self._unacked)
