"""The OpenAI-compatible stand-in as an aiohttp application, and the ways to run it: on the running event
loop, or in a thread for synchronous tests.

Its settings, faults, statistics and test hooks are the Ollama stand-in's (:class:`FakeOllamaConfig`,
``/__fake__/stats``, ``/__fake__/faults``), so a test or benchmark drives either the same way."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Iterator
from typing import Any, Final

from aiohttp import web

from shared.fakes.ollama import hooks
from shared.fakes.ollama.app import FakeOllamaServer
from shared.fakes.ollama.config import FakeOllamaConfig
from shared.fakes.ollama.state import STATE, FakeOllamaState
from shared.fakes.openai_server import routes
from shared.fakes.openai_server.responses import json_response
from shared.fakes.serving import serve_app
from shared.fakes.serving import serve_in_thread as _serve_in_thread

__all__ = ["FakeOpenAIServer", "build_app", "serve_in_thread", "start_fake_openai"]

_CONTROL_PREFIX: Final = "/__fake__/"


@web.middleware
async def _fastapi_like(request: web.Request, handler: Any) -> web.StreamResponse:
    """Count requests per path; answer unknown routes the way FastAPI (vLLM's server) does."""
    if not request.path.startswith(_CONTROL_PREFIX):
        request.app[STATE].stats.requests[request.path] += 1
    try:
        response: web.StreamResponse = await handler(request)
    except web.HTTPNotFound:
        return json_response({"detail": "Not Found"}, status=404)
    except web.HTTPMethodNotAllowed:
        return json_response({"detail": "Method Not Allowed"}, status=405)
    return response


async def _loading(app: web.Application) -> AsyncIterator[None]:
    """The models load when the server starts (``load_delay_s``); until then it answers 503 ``Loading model``."""
    state, loaded = app[STATE], app[routes.LOADED]

    async def load() -> None:
        if state.config.load_delay_s > 0:
            await asyncio.sleep(state.config.load_delay_s)
        state.stats.model_loads += len(state.config.models)
        loaded.set()

    task = asyncio.create_task(load())
    yield
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task


def build_app(config: FakeOllamaConfig | None = None) -> web.Application:
    """The stand-in as an aiohttp application (not started)."""
    app = web.Application(middlewares=[_fastapi_like], client_max_size=64 * 1024 * 1024)
    app[STATE] = FakeOllamaState(config or FakeOllamaConfig())
    app[routes.LOADED] = asyncio.Event()

    async def on_shutdown(app: web.Application) -> None:
        app[STATE].shutting_down.set()

    app.on_shutdown.append(on_shutdown)
    app.cleanup_ctx.append(_loading)
    app.router.add_get("/health", routes.health)
    app.router.add_get("/version", routes.version)
    app.router.add_get("/v1/models", routes.models)
    app.router.add_post("/v1/chat/completions", routes.chat_completions)
    app.router.add_post("/v1/completions", routes.completions)
    app.router.add_post("/v1/embeddings", routes.embeddings)
    hooks.add_routes(app.router)
    return app


class FakeOpenAIServer(FakeOllamaServer):
    """A running OpenAI-compatible stand-in: its state, faults and hooks are the Ollama stand-in's."""


async def start_fake_openai(
    host: str = "127.0.0.1", port: int = 0, config: FakeOllamaConfig | None = None
) -> FakeOpenAIServer:
    """Start the stand-in on the running event loop; port 0 picks a free port."""
    return await serve_app(FakeOpenAIServer, build_app(config), host, port)


@contextlib.contextmanager
def serve_in_thread(
    config: FakeOllamaConfig | None = None, *, host: str = "127.0.0.1", port: int = 0
) -> Iterator[FakeOpenAIServer]:
    """Run the stand-in on its own event loop in a daemon thread (for synchronous tests)."""
    with _serve_in_thread(
        lambda: start_fake_openai(host, port, config), FakeOpenAIServer.close, name="fake-openai"
    ) as server:
        yield server
