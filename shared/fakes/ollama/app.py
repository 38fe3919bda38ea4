"""The stand-in as an aiohttp application (routes, gin's answers to unknown routes), and the ways to run
it: on the running event loop, or in a thread for synchronous tests."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any, Final

from aiohttp import web

from shared.fakes.ollama import hooks
from shared.fakes.ollama.config import FakeOllamaConfig
from shared.fakes.ollama.embed import embed
from shared.fakes.ollama.inference import chat, generate
from shared.fakes.ollama.management import delete, ps, pull, show, tags
from shared.fakes.ollama.responses import json_response
from shared.fakes.ollama.state import STATE, FakeOllamaState
from shared.fakes.serving import RunningSite, serve_app
from shared.fakes.serving import serve_in_thread as _serve_in_thread

__all__ = ["FakeOllamaServer", "build_app", "serve_in_thread", "start_fake_ollama"]


_CONTROL_PREFIX: Final = "/__fake__/"


async def _root(request: web.Request) -> web.Response:
    return web.Response(text="Ollama is running", content_type="text/plain", charset="utf-8")


async def _version(request: web.Request) -> web.Response:
    return json_response({"version": request.app[STATE].config.version})


@web.middleware
async def _gin_like(request: web.Request, handler: Any) -> web.StreamResponse:
    """Count requests per path; answer unknown routes the way gin does."""
    if not request.path.startswith(_CONTROL_PREFIX):
        request.app[STATE].stats.requests[request.path] += 1
    try:
        response: web.StreamResponse = await handler(request)
    except web.HTTPNotFound:
        return web.Response(status=404, text="404 page not found", content_type="text/plain")
    except web.HTTPMethodNotAllowed:
        return web.Response(status=405, text="405 method not allowed", content_type="text/plain")
    return response


def build_app(config: FakeOllamaConfig | None = None) -> web.Application:
    """The stand-in as an aiohttp application (not started)."""
    state = FakeOllamaState(config or FakeOllamaConfig())
    app = web.Application(middlewares=[_gin_like], client_max_size=256 * 1024 * 1024)
    app[STATE] = state

    async def on_shutdown(app: web.Application) -> None:
        app[STATE].shutting_down.set()

    app.on_shutdown.append(on_shutdown)
    app.router.add_get("/", _root)
    app.router.add_get("/api/version", _version)
    app.router.add_get("/api/tags", tags)
    app.router.add_get("/api/ps", ps)
    app.router.add_post("/api/generate", generate)
    app.router.add_post("/api/chat", chat)
    app.router.add_post("/api/embed", embed)
    app.router.add_post("/api/pull", pull)
    app.router.add_post("/api/show", show)
    app.router.add_delete("/api/delete", delete)
    hooks.add_routes(app.router)
    return app


class FakeOllamaServer(RunningSite):
    """A running Ollama stand-in."""

    @property
    def state(self) -> FakeOllamaState:
        return self.runner.app[STATE]


async def start_fake_ollama(
    host: str = "127.0.0.1", port: int = 0, config: FakeOllamaConfig | None = None
) -> FakeOllamaServer:
    """Start the stand-in on the running event loop; port 0 picks a free port."""
    return await serve_app(FakeOllamaServer, build_app(config), host, port)


@contextlib.contextmanager
def serve_in_thread(
    config: FakeOllamaConfig | None = None, *, host: str = "127.0.0.1", port: int = 0
) -> Iterator[FakeOllamaServer]:
    """Run the stand-in on its own event loop in a daemon thread (for synchronous tests).

    Talk to it over HTTP (``server.url``, the ``/__fake__`` endpoints); its ``state`` belongs to
    the server thread.
    """
    with _serve_in_thread(
        lambda: start_fake_ollama(host, port, config), FakeOllamaServer.close, name="fake-ollama"
    ) as server:
        yield server
