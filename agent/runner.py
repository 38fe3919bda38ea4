"""Run one attempt of one job: stream from the model server, report, enforce the time limit."""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field

import aiohttp

from agent.ollama import OllamaClient, OllamaError
from agent.reporter import Reporter
from shared.events import AgentJob
from shared.models import JobError, JobResult

__all__ = ["JobRun", "run_job"]

log = logging.getLogger("gpuq.agent.runner")


@dataclass
class JobRun:
    spec: AgentJob
    listener: asyncio.Queue[str | None] | None = None  # a direct stream's reader, if any
    task: asyncio.Task[None] | None = None
    outcome: str | None = None
    cancel_requested: bool = False
    done: asyncio.Event = field(default_factory=asyncio.Event)

    def cancel(self) -> None:
        if self.task is not None and not self.task.done():
            self.cancel_requested = True
            self.task.cancel()


async def run_job(run: JobRun, ollama: OllamaClient, http: aiohttp.ClientSession, *,
                  report_interval_s: float) -> None:
    spec = run.spec
    reporter = Reporter(http, spec, interval_s=report_interval_s, on_cancel=run.cancel,
                        eager_first=run.listener is None)
    reporter.start()
    outcome, result, error = "failed", None, None
    try:
        async with asyncio.timeout(spec.timeout_s):
            result = await _generate(ollama, spec, reporter, run.listener)
        outcome = "succeeded"
    except aiohttp.ClientError as exc:  # before TimeoutError: aiohttp's connect timeout is both
        error = JobError(code="model_server_unreachable", message=f"{type(exc).__name__}: {exc}")
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
        run.outcome = outcome
        log.info("job %s attempt %d %s%s", spec.job_id, spec.attempt, outcome, f" ({error.code})" if error else "")
        if run.listener is not None:
            run.listener.put_nowait(None)
        try:
            await asyncio.shield(reporter.finish(outcome, result=result, error=error))
        finally:
            run.done.set()


async def _generate(ollama: OllamaClient, spec: AgentJob, reporter: Reporter,
                    listener: asyncio.Queue[str | None] | None) -> JobResult | None:
    async for piece in ollama.stream(spec):
        if piece.text:
            reporter.add(piece.text)
            if listener is not None:
                listener.put_nowait(piece.text)
        if piece.result is not None:
            return piece.result
    return None
