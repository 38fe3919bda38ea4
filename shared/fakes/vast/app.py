"""The fake as an aiohttp application (routes, the edge middleware, the process watcher), and the ways
to run it: on the running event loop, or in a thread for synchronous tests."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Iterator

from aiohttp import web

from shared.fakes.serving import RunningSite, serve_app
from shared.fakes.serving import serve_in_thread as _serve_in_thread
from shared.fakes.vast.config import FakeVastConfig
from shared.fakes.vast.edge import vast_edge
from shared.fakes.vast.endpoints import (
    bundles,
    create_instance,
    current_user,
    destroy_instance,
    gpu_names,
    instance_filters,
    list_v0,
    list_v1,
    manage_instance,
    show_instance,
)
from shared.fakes.vast.hooks import (
    CONTROL,
    clear_faults,
    destroy_all,
    get_calls,
    get_faults,
    get_instances,
    reset_calls,
    set_faults,
)
from shared.fakes.vast.processes import shutdown_instances, watch_processes
from shared.fakes.vast.state import STATE, FakeVastState

__all__ = ["FakeVastServer", "build_app", "serve_in_thread", "start_fake_vast"]


async def _lifecycle(app: web.Application) -> AsyncIterator[None]:
    state = app[STATE]
    watcher = asyncio.create_task(watch_processes(state))
    yield
    watcher.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await watcher
    await shutdown_instances(state)


def build_app(config: FakeVastConfig | None = None) -> web.Application:
    """The fake Vast API as an aiohttp app (``state.url`` is set by :func:`start_fake_vast`)."""
    app = web.Application(middlewares=[vast_edge])
    app[STATE] = FakeVastState(config=config or FakeVastConfig())
    r = app.router
    r.add_get("/api/v0/gpu_names/unique/", gpu_names)
    r.add_get("/api/v0/users/current", current_user)
    r.add_get("/api/v0/users/current/", current_user)
    r.add_get("/api/v0/instances/", list_v0)
    r.add_get("/api/v0/instances/filters/", instance_filters)
    r.add_get("/api/v0/instances/{id}/", show_instance)
    r.add_put("/api/v0/instances/{id}/", manage_instance)
    r.add_delete("/api/v0/instances/{id}/", destroy_instance)
    r.add_get("/api/v1/instances/", list_v1)
    r.add_post("/api/v0/bundles/", bundles)
    r.add_get("/api/v0/bundles/", bundles)
    r.add_put("/api/v0/asks/{offer_id}/", create_instance)
    r.add_get(CONTROL + "calls", get_calls)
    r.add_delete(CONTROL + "calls", reset_calls)
    r.add_get(CONTROL + "faults", get_faults)
    r.add_post(CONTROL + "faults", set_faults)
    r.add_delete(CONTROL + "faults", clear_faults)
    r.add_get(CONTROL + "instances", get_instances)
    r.add_delete(CONTROL + "instances", destroy_all)
    app.cleanup_ctx.append(_lifecycle)
    return app


class FakeVastServer(RunningSite):
    """A running fake Vast cloud."""

    @property
    def state(self) -> FakeVastState:
        return self.runner.app[STATE]


async def start_fake_vast(
    host: str = "127.0.0.1", port: int = 0, config: FakeVastConfig | None = None
) -> FakeVastServer:
    """Start the fake on the running event loop; port 0 picks a free port."""
    server = await serve_app(FakeVastServer, build_app(config), host, port)
    server.state.url = server.url
    return server


@contextlib.contextmanager
def serve_in_thread(
    config: FakeVastConfig | None = None, *, host: str = "127.0.0.1", port: int = 0
) -> Iterator[FakeVastServer]:
    """Run the fake on its own event loop in a daemon thread (for synchronous tests); every instance
    process is stopped when the block ends. Talk to it over HTTP; its ``state`` belongs to that thread."""
    with _serve_in_thread(
        lambda: start_fake_vast(host, port, config), FakeVastServer.close, name="fake-vast", close_timeout_s=60
    ) as server:
        yield server
