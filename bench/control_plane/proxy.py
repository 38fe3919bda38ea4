"""A pass-through proxy in front of the functions that refuses the agent's ready announcement (``/trigger``)."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from contextlib import contextmanager

import aiohttp
from aiohttp import web

from bench.control_plane.constants import HOST
from shared.tools.devstack import free_port

__all__ = ["NoAnnounceProxy"]


class NoAnnounceProxy:
    """Passes every call through to the functions, except the agent's ready announcement (``/trigger``)."""

    def __init__(self, target: str) -> None:
        self.target = target
        self.port = free_port()
        self.url = f"http://{HOST}:{self.port}"
        self.refused = 0
        self._session: aiohttp.ClientSession | None = None

    async def _forward(self, request: web.Request) -> web.Response:
        if request.path.startswith("/trigger"):
            self.refused += 1
            return web.json_response({"error": {"code": "bench", "message": "announcement refused"}}, status=503)
        headers = {
            k: v
            for k, v in request.headers.items()
            if k.lower() not in ("host", "content-length", "transfer-encoding", "connection")
        }
        assert self._session is not None
        async with self._session.request(
            request.method, self.target + request.path_qs, data=await request.read(), headers=headers
        ) as upstream:
            return web.Response(body=await upstream.read(), status=upstream.status, content_type=upstream.content_type)

    @contextmanager
    def running(self) -> Iterator[None]:
        loop = asyncio.new_event_loop()
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._forward)
        runner = web.AppRunner(app, access_log=None)

        async def start() -> None:
            self._session = aiohttp.ClientSession()
            await runner.setup()
            await web.TCPSite(runner, HOST, self.port).start()

        async def stop() -> None:
            await runner.cleanup()
            if self._session is not None:
                await self._session.close()

        thread = threading.Thread(target=loop.run_forever, daemon=True, name="no-announce-proxy")
        thread.start()
        try:
            asyncio.run_coroutine_threadsafe(start(), loop).result(30)
            yield
        finally:
            asyncio.run_coroutine_threadsafe(stop(), loop).result(30)
            loop.call_soon_threadsafe(loop.stop)
            thread.join(30)
            loop.close()
