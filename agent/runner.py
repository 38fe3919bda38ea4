"""Run one attempt of one job: stream from the model server, report, enforce the time limit."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from agent.backend import ModelBackend
from agent.direct_stream import DirectStream
from agent.report_sender import ReportSender
from agent.reporter import JobReporter
from shared.errors import OllamaError
from shared.jobs.events import AgentJob
from shared.models import JobError, JobResult

__all__ = ["JobRun", "run_job"]

log = logging.getLogger("gpuq.agent.runner")


@dataclass
class JobRun:
    spec: AgentJob
    direct: DirectStream | None = None  # the caller reading the output on its own connection, if any
    task: asyncio.Task[None] | None = None
    outcome: str | None = None
    result: JobResult | None = None  # the model server's counters, once it finished
    cancel_requested: bool = False
    ended: asyncio.Event = field(default_factory=asyncio.Event)  # generation over, outcome known
    on_ended: Callable[[], None] | None = None
    done: asyncio.Event = field(default_factory=asyncio.Event)  # ...and the control plane has the outcome

    def cancel(self) -> None:
        if self.task is not None and not self.task.done() and not self.ended.is_set():
            self.cancel_requested = True
            self.task.cancel()


class _Output:
    """Where each read of the model server's output goes, synchronously: the report buffer, and the
    direct caller's socket if there is one (what to await when that caller reads slower than the model)."""

    __slots__ = ("_reporter", "_run")

    def __init__(self, reporter: JobReporter, run: JobRun) -> None:
        self._reporter = reporter
        self._run = run

    def __call__(self, texts: list[str]) -> Awaitable[None] | None:
        self._reporter.add(texts)
        direct = self._run.direct
        if direct is None:
            return None
        pending = direct.write_now(texts)
        if direct.gone:
            self._run.direct = None  # the caller left; the job goes on and reports as usual
        return pending


async def run_job(run: JobRun, ollama: ModelBackend, reports: ReportSender) -> None:
    spec = run.spec
    reporter = reports.register(spec, on_cancel=run.cancel, eager=run.direct is None)
    outcome, result, error = "failed", None, None
    try:
        async with asyncio.timeout(spec.timeout_s):
            result = await ollama.generate(spec, _Output(reporter, run), reporter.note)
        outcome = "succeeded"
    except TimeoutError:
        error = JobError(code="timeout", message=f"ran longer than timeout_s={spec.timeout_s:g}s")
    except OllamaError as exc:
        error = JobError(code=exc.code, message=exc.message)
    except asyncio.CancelledError:
        if not run.cancel_requested:
            raise
        outcome = "cancelled"
        error = JobError(code="cancelled", message="cancelled by the control plane")
    finally:
        run.outcome, run.result = outcome, result
        log.info("job %s attempt %d %s%s", spec.job_id, spec.attempt, outcome, f" ({error.code})" if error else "")
        run.ended.set()
        if run.on_ended is not None:
            run.on_ended()
        reporter.finish(outcome, result=result, error=error, now=asyncio.get_running_loop().time())
        try:
            await asyncio.shield(reporter.accepted.wait())
        finally:
            run.done.set()
