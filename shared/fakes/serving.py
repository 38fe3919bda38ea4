"""Running an asyncio server for the fakes and tests: in a background thread (synchronous tests), or in
the foreground until SIGINT/SIGTERM (the ``gpuq fake-*`` commands)."""

from __future__ import annotations

import asyncio
import contextlib
import signal
import sys
import threading
from collections.abc import Callable, Coroutine, Iterator
from dataclasses import dataclass
from typing import Any, TypeVar

from aiohttp import web

__all__ = ["RunningSite", "serve_app", "serve_app_in_thread", "serve_in_thread", "serve_until_signalled", "start_site"]

S = TypeVar("S")
R = TypeVar("R", bound="RunningSite")


@contextlib.contextmanager
def serve_in_thread(
    start: Callable[[], Coroutine[Any, Any, S]],
    close: Callable[[S], Coroutine[Any, Any, None]],
    *,
    name: str,
    close_timeout_s: float = 30.0,
) -> Iterator[S]:
    """Start a server on its own event loop in a daemon thread; close it and the loop when the block ends.

    Talk to it over its sockets: whatever state it has belongs to that thread."""
    loop = asyncio.new_event_loop()

    def run() -> None:
        asyncio.set_event_loop(loop)
        try:
            loop.run_forever()
        finally:
            loop.run_until_complete(loop.shutdown_asyncgens())
            loop.close()

    thread = threading.Thread(target=run, name=name, daemon=True)
    thread.start()
    try:
        server = asyncio.run_coroutine_threadsafe(start(), loop).result(30)
        try:
            yield server
        finally:
            asyncio.run_coroutine_threadsafe(close(server), loop).result(close_timeout_s)
    finally:
        loop.call_soon_threadsafe(loop.stop)
        thread.join(30)


def serve_until_signalled(
    start: Callable[[], Coroutine[Any, Any, S]],
    close: Callable[[S], Coroutine[Any, Any, None]],
    *,
    name: str,
    where: str,
    banner: Callable[[S], str],
    farewell: str = "",
) -> int:
    """Run a server in the foreground until SIGINT or SIGTERM. Returns the process exit code."""

    async def serve() -> int:
        try:
            server = await start()
        except OSError as exc:
            print(f"{name}: cannot listen on {where}: {exc}", file=sys.stderr)
            return 1
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        print(banner(server), flush=True)
        try:
            await stop.wait()
        finally:
            for sig in (signal.SIGINT, signal.SIGTERM):
                loop.remove_signal_handler(sig)
            await close(server)
        if farewell:
            print(farewell, flush=True)
        return 0

    return asyncio.run(serve())


async def start_site(app: web.Application, host: str, port: int) -> tuple[web.AppRunner, int]:
    """Serve an aiohttp app on ``host:port`` (0 picks a free port); returns the runner and the bound port."""
    runner = web.AppRunner(app, access_log=None, handle_signals=False, shutdown_timeout=2.0)
    await runner.setup()
    try:
        site = web.TCPSite(runner, host, port)
        await site.start()
    except BaseException:
        await runner.cleanup()
        raise
    bound = runner.addresses[0][1] if runner.addresses else port
    return runner, int(bound)


@dataclass
class RunningSite:
    """A fake being served. ``port`` is the bound port (also when started with port 0)."""

    runner: web.AppRunner
    host: str
    port: int

    @property
    def app(self) -> web.Application:
        return self.runner.app

    @property
    def url(self) -> str:
        host = self.host if self.host not in ("", "0.0.0.0", "::") else "127.0.0.1"
        if ":" in host:
            host = f"[{host}]"
        return f"http://{host}:{self.port}"

    async def close(self) -> None:
        await self.runner.cleanup()


async def serve_app(kind: type[R], app: web.Application, host: str, port: int) -> R:
    """Serve ``app`` on ``host:port`` (0 picks a free port) on the running event loop, as a ``kind``."""
    runner, bound = await start_site(app, host, port)
    return kind(runner=runner, host=host, port=bound)


@contextlib.contextmanager
def serve_app_in_thread(app: web.Application, *, name: str = "aiohttp-app") -> Iterator[str]:
    """Serve an aiohttp app on 127.0.0.1 (free port) from its own event loop in a thread; yields its URL."""

    async def start() -> RunningSite:
        return await serve_app(RunningSite, app, "127.0.0.1", 0)

    with serve_in_thread(start, RunningSite.close, name=name) as served:
        yield served.url
