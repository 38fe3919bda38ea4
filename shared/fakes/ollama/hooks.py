"""The test hooks (not part of Ollama): ``/__fake__/stats`` and ``/__fake__/faults``.

``GET /__fake__/stats`` (``DELETE`` resets): requests started per path, generations started (total,
per path, per prompt key - see :func:`~shared.fakes.ollama.text.prompt_key`), completed and
interrupted, model loads/unloads, pulls, queue rejections, faults fired, plus the in-flight and active
gauges. ``GET``/``POST``/``DELETE /__fake__/faults``: arm one-shot faults (see
:class:`~shared.fakes.ollama.config.FakeFaults`) and change ``token_delay_s``, ``load_delay_s``,
``pull_delay_s``, ``default_num_tokens``, ``max_queue`` and ``num_parallel`` while the server runs.
The same faults can be set up front in ``FakeOllamaConfig.faults``."""

from __future__ import annotations

from aiohttp import web
from pydantic import ValidationError

from shared.fakes.ollama.config import FakeFaults, LiveUpdate
from shared.fakes.ollama.responses import error_response, json_response
from shared.fakes.ollama.state import STATE, Stats

__all__ = ["add_routes", "faults_delete", "faults_get", "faults_post", "stats_get", "stats_reset"]


async def stats_get(request: web.Request) -> web.Response:
    state = request.app[STATE]
    return json_response(state.stats.to_json(state.inflight, state.active))


async def stats_reset(request: web.Request) -> web.Response:
    state = request.app[STATE]
    state.stats = Stats()
    return json_response(state.stats.to_json(state.inflight, state.active))


async def faults_get(request: web.Request) -> web.Response:
    return json_response(request.app[STATE].control_view())


async def faults_post(request: web.Request) -> web.Response:
    state = request.app[STATE]
    raw = await request.read()
    try:
        update = LiveUpdate.model_validate_json(raw or b"{}")
        state.apply_update(update)
    except ValidationError as exc:
        return error_response(400, str(exc))
    return json_response(state.control_view())


async def faults_delete(request: web.Request) -> web.Response:
    state = request.app[STATE]
    state.faults = FakeFaults()
    return json_response(state.control_view())


def add_routes(router: web.UrlDispatcher) -> None:
    """The test hooks under ``/__fake__/``: statistics (read, reset) and faults (read, arm, clear)."""
    router.add_get("/__fake__/stats", stats_get)
    router.add_delete("/__fake__/stats", stats_reset)
    router.add_get("/__fake__/faults", faults_get)
    router.add_post("/__fake__/faults", faults_post)
    router.add_delete("/__fake__/faults", faults_delete)
