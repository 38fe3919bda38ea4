"""Bring the box to "ready": wait for the model server, pull and load the models, announce it.

A box whose model server cannot serve is announced ``failed`` (with why), so the control plane stops it
and starts another instead of leaving it billing; a supervised server (``GPUQ_AGENT_SERVER_COMMAND``)
goes through :mod:`agent.supervision`, which uses the same steps.
"""

from __future__ import annotations

import asyncio
import logging
import time

import aiohttp

from agent.backend import ModelBackend
from agent.box_events import post_box_event
from agent.state import AgentState, Phase
from shared.errors import OllamaError
from shared.settings import AgentSettings, split_csv

__all__ = ["announce", "become_ready", "fail", "preload"]

log = logging.getLogger("gpuq.agent.startup")

MODEL_SERVER_WAIT_S = 300.0


async def _wait_for_model_server(ollama: ModelBackend) -> list[str]:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + MODEL_SERVER_WAIT_S
    delay = 0.1
    while True:
        try:
            return await ollama.available_models()
        except (aiohttp.ClientError, TimeoutError):
            if loop.time() > deadline:
                raise
            await asyncio.sleep(delay)
            delay = min(delay * 2, 2.0)


PROCESS_START = time.monotonic()  # this module is imported at agent start-up


async def announce(settings: AgentSettings, http: aiohttp.ClientSession, event: str, fields: dict[str, object]) -> bool:
    """Tell the control plane (trigger) this box is ``ready`` (with how long its own start-up phases took)
    or ``failed`` (with its ``reason``). True once it answered 2xx."""
    if not settings.ready_url:
        return False
    answer = await post_box_event(settings, http, event, fields, tries=5, settled=lambda status: status < 300)
    if answer is not None:
        log.info("announced %s: %s", event, answer[1])
    return answer is not None


async def preload(settings: AgentSettings, ollama: ModelBackend, available: list[str]) -> None:
    """Pull what the server lacks of the preload models and load them all (``OllamaError`` if it cannot)."""
    for model in split_csv(settings.preload_models):
        if model not in available and f"{model}:latest" not in available:
            log.info("pulling %s", model)
            await ollama.pull(model)
        log.info("loading %s", model)
        await ollama.load(model)


async def fail(settings: AgentSettings, state: AgentState, http: aiohttp.ClientSession, reason: str) -> None:
    """The box cannot serve: say so (``/health``, refused jobs) and tell the control plane, which stops it."""
    state.phase = Phase.FAILED
    state.detail = reason
    log.error("model server not usable: %s", reason)
    await announce(settings, http, "failed", {"reason": reason[:200]})
    state.activity.set()  # now the idle watch may stop the box (after the control plane has heard why)


async def become_ready(
    settings: AgentSettings, state: AgentState, ollama: ModelBackend, http: aiohttp.ClientSession
) -> None:
    up_at = time.monotonic()
    try:
        available = await _wait_for_model_server(ollama)
        state.phase = Phase.LOADING_MODEL
        await preload(settings, ollama, available)
    except (aiohttp.ClientError, TimeoutError, OllamaError) as exc:
        await fail(settings, state, http, f"{type(exc).__name__}: {exc}")
        return
    state.phase = Phase.READY
    state.idle_since = time.monotonic()  # idle from now: a start longer than the keep-warm is no idle time
    state.activity.set()
    log.info("ready: models %s loaded", settings.preload_models)
    done_at = time.monotonic()
    state.model_load_s = done_at - up_at
    await announce(
        settings,
        http,
        "ready",
        {"agent_up_s": round(up_at - PROCESS_START, 3), "model_loaded_s": round(done_at - up_at, 3)},
    )
