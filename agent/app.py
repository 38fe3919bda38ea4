"""The agent's aiohttp application: routes, typed AppKeys, background tasks in cleanup_ctx.

Routes: ``GET /health`` (open; 503 until the model server answers and the models are loaded),
``POST /v1/jobs``, ``POST /v1/stream`` and ``POST /v1/jobs/{id}/cancel`` (signed by the control plane).
Handlers refuse by raising a :class:`~shared.errors.GpuqError`; one middleware, the agent's HTTP edge,
answers it with its ``status`` and ``to_body()``.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import time
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
from aiohttp import web
from aiohttp.typedefs import Handler
from pydantic import ValidationError

from agent import metrics
from agent.backend import ModelBackend, build_backend
from agent.direct_stream import DirectStream
from agent.drain import ask_to_stop
from agent.keepwarm import KeepWarm
from agent.model_server import ModelServer
from agent.report_sender import ReportSender
from agent.runner import JobRun, run_job
from agent.selfstop import watch_idle
from agent.startup import become_ready
from agent.state import AgentState, Phase
from agent.supervision import supervise, supervised_server
from shared.boxes.providers.base import ComputeProvider
from shared.errors import Forbidden, GpuqError, NotFound, ServiceError, ValidationFailed
from shared.jobs.events import AgentJob, AgentJobAccepted
from shared.money.idle import IdlePolicyConfig
from shared.security.keys import verify_bearer
from shared.security.signing import RequestSigner
from shared.settings import AgentSettings

__all__ = ["build_app"]

log = logging.getLogger("gpuq.agent")

SETTINGS = web.AppKey("settings", AgentSettings)
KEEP_WARM = web.AppKey("keep_warm", KeepWarm)
STATE = web.AppKey("state", AgentState)
SIGNER = web.AppKey("signer", RequestSigner)
BACKEND: web.AppKey[ModelBackend] = web.AppKey("backend")  # Ollama or OpenAI-compatible (agent/backend.py)
HTTP = web.AppKey("http", aiohttp.ClientSession)
REPORTS = web.AppKey("reports", ReportSender)
SERVER = web.AppKey("server", ModelServer)  # only when the agent supervises its model server


@web.middleware
async def _errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    """The agent's HTTP edge: a refusal raised anywhere below becomes its JSON body and status."""
    try:
        return await handler(request)
    except GpuqError as exc:
        return web.json_response(exc.to_body(), status=exc.status)


async def _verified_body(request: web.Request) -> bytes:
    body = await request.read()
    request.app[SIGNER].verify(request.method, request.path, request.headers, body)
    return body


async def _metrics(request: web.Request) -> web.Response:
    token = request.app[SETTINGS].metrics_token
    if not token:
        raise Forbidden("metrics are off: set GPUQ_AGENT_METRICS_TOKEN", code="metrics_disabled")
    verify_bearer(request.headers, token, what="metrics token")
    return web.Response(body=metrics.render(request.app[STATE]), headers={"Content-Type": metrics.CONTENT_TYPE})


async def _health(request: web.Request) -> web.Response:
    state = request.app[STATE]
    body: dict[str, Any] = {
        "status": state.phase.value,
        "running_jobs": state.active(),
        "jobs_done": state.jobs_done,
        "idle_s": round(state.idle_s(), 3),
        "instance_id": request.app[SETTINGS].instance_id,
        "phase": state.phase.health,
        "reason": state.reason(),
    }
    if (server := request.app.get(SERVER)) is not None:
        body["server"] = server.describe()
    if state.phase is not Phase.READY:
        body["error"] = {"code": state.phase.value, "message": state.detail or f"agent is {state.phase.value}"}
    return web.json_response(body, status=200 if state.phase is Phase.READY else 503)


def _finished(state: AgentState, run: JobRun) -> None:
    state.finished(run)
    if not state.active():
        state.idle_since = time.monotonic()
    state.activity.set()


async def _intake(request: web.Request, *, direct: DirectStream | None = None) -> JobRun | AgentJobAccepted:
    """Verify, parse and start a job attempt: its run, or, for an attempt already here, its acceptance.

    Refusals raise (bad signature, invalid job, agent not ready or full).
    """
    body = await _verified_body(request)
    try:
        spec = AgentJob.model_validate_json(body)
    except ValidationError as exc:
        raise ValidationFailed(str(exc.errors()[:3]), code="invalid_job") from None
    app = request.app
    state, settings = app[STATE], app[SETTINGS]
    existing = state.runs.get(spec.job_id)
    if existing is not None and (not existing.done.is_set() or spec.attempt <= existing.spec.attempt):
        return AgentJobAccepted(job_id=spec.job_id, attempt=existing.spec.attempt, duplicate=True)
    if state.phase is not Phase.READY:
        raise ServiceError(state.detail or f"agent is {state.phase.value}", code=state.phase.value)
    if state.generating >= settings.max_concurrent_jobs:
        raise ServiceError(f"{settings.max_concurrent_jobs} jobs already running", code="agent_busy")
    keep_warm = app[KEEP_WARM]
    keep_warm.update(spec.cold_start_s, spec.price_per_hour)
    if not state.active():  # this job ends an idle gap: the policy learns from it
        keep_warm.observe_gap(time.monotonic() - state.idle_since)
    run = JobRun(spec, direct=direct)
    state.admitted(run)
    run.task = asyncio.create_task(run_job(run, app[BACKEND], app[REPORTS]))
    run.task.add_done_callback(lambda _t: _finished(state, run))
    state.activity.set()
    return run


async def _accept_job(request: web.Request) -> web.Response:
    """The control plane hands over a job; it runs in the background and reports as it goes."""
    run = await _intake(request)
    if isinstance(run, AgentJobAccepted):
        return web.json_response(run.model_dump(), status=200)
    log.info("job %s attempt %d accepted", run.spec.job_id, run.spec.attempt)
    return web.json_response(
        AgentJobAccepted(job_id=run.spec.job_id, attempt=run.spec.attempt).model_dump(), status=202
    )


async def _stream_job(request: web.Request) -> web.StreamResponse:
    """Like ``/v1/jobs``, and the output also streams back on this connection as NDJSON.

    Lines: ``{"response": "<text>"}`` per piece, then ``{"done": true, "status": ...}``. Reports and
    chunk storage at the control plane go on as for any job; if this client goes away the job
    still completes.
    """
    direct = DirectStream()
    run = await _intake(request, direct=direct)
    if isinstance(run, AgentJobAccepted):
        return web.json_response(run.model_dump(), status=200)
    await asyncio.sleep(0)  # one loop turn: the job's request reaches the model server before our headers go out
    response = await direct.open(request)  # the job's own task writes the output to it as it comes
    await run.ended.wait()
    await direct.close(run.outcome)
    return response


async def _cancel_job(request: web.Request) -> web.Response:
    await _verified_body(request)
    run = request.app[STATE].runs.get(request.match_info["job_id"])
    if run is None:
        raise NotFound("this agent has no such job", code="job_not_found")
    run.cancel()
    return web.json_response({"cancelled": True})


def _provider(settings: AgentSettings) -> ComputeProvider | None:
    if settings.provider == "local":
        from shared.boxes.providers.local import LocalProvider

        return LocalProvider(settings.local_state_dir)
    if settings.provider == "vast":  # `vastai stop instance $CONTAINER_ID`, confirmed; REST fallback
        from agent.vast_selfstop import VastSelfStop
        from shared.settings import VastSelfStopSettings

        return VastSelfStop(VastSelfStopSettings())
    return None


def _start_up(app: web.Application) -> list[asyncio.Task[None]]:
    """Bring the box to ready: wait for the model server, or start and supervise it."""
    settings, state, backend, http = app[SETTINGS], app[STATE], app[BACKEND], app[HTTP]
    server = app.get(SERVER)
    if server is None:
        return [asyncio.create_task(become_ready(settings, state, backend, http))]
    return [asyncio.create_task(server.run()), asyncio.create_task(supervise(settings, state, backend, http, server))]


async def _background(app: web.Application) -> AsyncIterator[None]:
    settings, state = app[SETTINGS], app[STATE]
    # One pooled session for reports and announcements, made inside the running loop.
    app[HTTP] = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=16), timeout=aiohttp.ClientTimeout(total=10))
    app[REPORTS] = ReportSender(app[HTTP], interval_s=settings.report_interval_s)
    tasks = [
        asyncio.create_task(app[REPORTS].run()),
        *_start_up(app),
        asyncio.create_task(
            watch_idle(
                state,
                _provider(settings),
                settings.instance_id,
                app[KEEP_WARM].keep_warm_s,
                may_stop=functools.partial(ask_to_stop, settings, app[HTTP]),
            )
        ),
    ]
    yield
    if (server := app.get(SERVER)) is not None:
        await server.stop()
    for run in state.runs.values():
        run.cancel()
    pending = [run.task for run in state.runs.values() if run.task is not None]
    if pending:
        await asyncio.wait(pending, timeout=15.0)  # let final reports go out
        app[REPORTS].abandon()
        await asyncio.wait(pending)
    for task in tasks:
        task.cancel()
    for task in tasks:
        with contextlib.suppress(asyncio.CancelledError):
            await task
    await app[BACKEND].aclose()
    await app[HTTP].close()


def build_app(settings: AgentSettings) -> web.Application:
    if not settings.secret:
        raise ValueError("GPUQ_AGENT_SECRET is required: the agent refuses to run unauthenticated")
    app = web.Application(client_max_size=4 * 1024 * 1024, middlewares=[_errors])
    app[SETTINGS] = settings
    app[KEEP_WARM] = KeepWarm(
        IdlePolicyConfig(
            policy=settings.idle_policy,
            fixed_keep_warm_s=settings.idle_grace_s,
            cold_start_s=settings.idle_cold_start_s,
            price_per_hour=settings.idle_price_per_hour,
            wait_value_per_hour=settings.idle_wait_value_per_hour,
            max_keep_warm_s=max(settings.idle_max_keep_warm_s, settings.idle_grace_s),
        )
    )
    app[STATE] = AgentState()
    app[SIGNER] = RequestSigner(settings.secret)
    app[BACKEND] = build_backend(settings)
    if (server := supervised_server(settings, app[STATE], app[BACKEND])) is not None:
        app[SERVER] = server
    app.router.add_get("/health", _health)
    app.router.add_get("/metrics", _metrics)
    app.router.add_post("/v1/jobs", _accept_job)
    app.router.add_post("/v1/stream", _stream_job)
    app.router.add_post("/v1/jobs/{job_id}/cancel", _cancel_job)
    app.cleanup_ctx.append(_background)
    return app
