"""Start-up with a supervised model server (``GPUQ_AGENT_SERVER_COMMAND``): the box follows its server.

:class:`~agent.model_server.ModelServer` runs the process; here its phases become the box's
(:class:`~agent.state.AgentState`): starting and loading while it comes up (with its ``on_info`` lines as
the reason), then the preload models are loaded through its API as without supervision, then ready and
announced. A server that crashes takes the box back to starting (new jobs are refused with ``503``, so
the control plane holds them; running ones fail over their lost connection and are retried), and once it
is up again the box is ready and announced again, which runs the held jobs at once. A server that cannot
come up fails the box, which is announced ``failed``: the control plane stops it and starts another.
"""

from __future__ import annotations

import logging
import time

import aiohttp

from agent.backend import ModelBackend
from agent.model_server import ModelServer, ServerConfig, ServerPhase
from agent.startup import PROCESS_START, announce, fail, preload
from agent.state import AgentState, Phase
from shared.errors import OllamaError
from shared.settings import AgentSettings

__all__ = ["supervise", "supervised_server"]

log = logging.getLogger("gpuq.agent.supervision")


def supervised_server(settings: AgentSettings, state: AgentState, backend: ModelBackend) -> ModelServer | None:
    """The model server to supervise, its phases mirrored into ``state``; ``None`` when none is configured."""
    config = ServerConfig.from_settings(settings)
    if config is None:
        return None

    def mirror(phase: ServerPhase, reason: str) -> None:
        if state.phase is Phase.STOPPING:  # the box is on its way down: its phase stays
            return
        if phase is ServerPhase.STARTING:
            state.phase, state.detail = Phase.STARTING, reason
        elif phase is ServerPhase.LOADING:
            state.phase, state.detail = Phase.LOADING_MODEL, reason
        else:  # up: supervise() loads the models, then says ready; failed: supervise() reports it
            return
        state.activity.set()

    return ModelServer(config, probe=backend.available_models, on_change=mirror)


async def supervise(
    settings: AgentSettings,
    state: AgentState,
    backend: ModelBackend,
    http: aiohttp.ClientSession,
    server: ModelServer,
) -> None:
    """Follow the server until it fails (then fail the box) or the agent stops."""
    started = time.monotonic()
    while await server.wait_up():
        state.phase, state.detail = Phase.LOADING_MODEL, ""
        try:
            await preload(settings, backend, await backend.available_models())
        except OllamaError as exc:  # the server is up but cannot serve the models (missing, refused)
            await server.stop()
            await fail(settings, state, http, f"{type(exc).__name__}: {exc}")
            return
        except (aiohttp.ClientError, TimeoutError) as exc:  # it went away meanwhile: its supervisor restarts it
            log.warning("model server went away while loading models: %s", type(exc).__name__)
            await server.wait_down()
            continue
        phases: dict[str, object] = {}
        if state.model_load_s is None:  # the first ready: its start-up phases feed the cold-start estimate
            state.model_load_s = time.monotonic() - started
            phases = {"agent_up_s": round(started - PROCESS_START, 3), "model_loaded_s": round(state.model_load_s, 3)}
        state.phase, state.detail = Phase.READY, ""
        state.idle_since = time.monotonic()  # idle from now: a slow start is not idle time to stop for
        state.activity.set()
        log.info("ready: models %s loaded (server restarts so far: %d)", settings.preload_models, server.restarts)
        await announce(settings, http, "ready", phases)
        await server.wait_down()
    if server.phase is ServerPhase.FAILED:
        await fail(settings, state, http, server.reason)
