"""Bring the box to "ready": wait for the model server, pull and load the models, announce it."""

from __future__ import annotations

import asyncio
import json
import logging
import time
from urllib.parse import urlsplit

import aiohttp

from agent.ollama import OllamaClient
from agent.state import AgentState, Phase
from shared.errors import OllamaError
from shared.security.signing import RequestSigner
from shared.settings import AgentSettings, split_csv

__all__ = ["become_ready"]

log = logging.getLogger("gpuq.agent.startup")

MODEL_SERVER_WAIT_S = 300.0


async def _wait_for_model_server(ollama: OllamaClient) -> list[str]:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + MODEL_SERVER_WAIT_S
    delay = 0.1
    while True:
        try:
            return await ollama.tags()
        except (aiohttp.ClientError, TimeoutError):
            if loop.time() > deadline:
                raise
            await asyncio.sleep(delay)
            delay = min(delay * 2, 2.0)


PROCESS_START = time.monotonic()  # this module is imported at agent start-up


async def _announce_ready(settings: AgentSettings, http: aiohttp.ClientSession, phases: dict[str, float]) -> None:
    """Tell the control plane (trigger) this box is ready, with how long its own start-up phases took."""
    if not settings.ready_url:
        return
    body = json.dumps({"instance_id": settings.instance_id, "event": "ready", **phases}).encode()
    signer = RequestSigner(settings.secret)
    for attempt in range(5):
        headers = signer.sign("POST", urlsplit(settings.ready_url).path, body)
        headers["Content-Type"] = "application/json"
        try:
            async with http.post(
                settings.ready_url, data=body, headers=headers, timeout=aiohttp.ClientTimeout(total=10)
            ) as response:
                text = await response.text()
            if response.status < 300:
                log.info("announced ready: %s", text)
                return
            log.warning("ready announcement answered %d: %s", response.status, text[:200])
        except (aiohttp.ClientError, TimeoutError) as exc:
            log.warning("ready announcement failed: %s", type(exc).__name__)
        await asyncio.sleep(0.5 * 2**attempt)


async def become_ready(
    settings: AgentSettings, state: AgentState, ollama: OllamaClient, http: aiohttp.ClientSession
) -> None:
    up_at = time.monotonic()
    try:
        available = await _wait_for_model_server(ollama)
        state.phase = Phase.LOADING_MODEL
        for model in split_csv(settings.preload_models):
            if model not in available and f"{model}:latest" not in available:
                log.info("pulling %s", model)
                await ollama.pull(model)
            log.info("loading %s", model)
            await ollama.load(model)
    except (aiohttp.ClientError, TimeoutError, OllamaError) as exc:
        state.phase = Phase.FAILED
        state.detail = f"{type(exc).__name__}: {exc}"
        log.error("model server not usable: %s", state.detail)
        state.activity.set()
        return
    state.phase = Phase.READY
    state.activity.set()
    log.info("ready: models %s loaded", settings.preload_models)
    done_at = time.monotonic()
    await _announce_ready(
        settings, http, {"agent_up_s": round(up_at - PROCESS_START, 3), "model_loaded_s": round(done_at - up_at, 3)}
    )
