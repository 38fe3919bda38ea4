"""The output of a ``POST /v1/stream`` job, written straight to its caller's connection as NDJSON.

Lines: ``{"response": "<text>"}`` per piece, then ``{"done": true, "status": ...}``. Each read from the
model server is written as it comes, from the model server connection's own callback
(:mod:`agent.ollama_stream`): one chunk per read, no queue, no task in between. The response's
headers go out first through aiohttp; the pieces then go to the socket framed as HTTP/1.1 chunks
(plain bytes for an HTTP/1.0 caller, whose response ends with the connection), and the last line and
the end of the body through aiohttp again. That interleaving relies on aiohttp 3's payload writer,
which frames each write as one whole chunk and keeps no framing state between writes (pyproject pins
``aiohttp<4``).
"""

from __future__ import annotations

import asyncio
import contextlib
import json

from aiohttp import web

__all__ = ["DirectStream"]

HIGH_WATER = 256 * 1024  # bytes unsent to a slow caller before the model server's stream is paused
LOW_WATER = 64 * 1024
DRAIN_POLL_S = 0.01


class DirectStream:
    def __init__(self) -> None:
        self._response = web.StreamResponse(headers={"Content-Type": "application/x-ndjson"})
        self._transport: asyncio.Transport | None = None
        self._chunked = False
        self.gone = False
        self._early: list[str] = []  # pieces that came before the headers went out (seldom)

    async def open(self, request: web.Request) -> web.StreamResponse:
        """Send the headers (once the job is accepted: a refusal is a plain JSON answer instead)."""
        if request.version >= (1, 1):
            self._response.enable_chunked_encoding()  # what write_now frames its pieces as
        try:
            await self._response.prepare(request)
            await self._response.write(b"")  # aiohttp holds headers back until the first write: send them now
        except ConnectionResetError:
            self.gone = True
            return self._response
        transport = request.transport
        assert transport is None or isinstance(transport, asyncio.Transport)
        self._transport = transport
        self._chunked = self._response.chunked
        # write_now's bytes bypass aiohttp's payload writer, which is where compression happens: on a
        # compressed response they would be plain text inside a body its headers declare gzip or deflate.
        # Checked once here, not per write (the hot path).
        assert not self._response.compression, "a direct stream writes raw frames: its response must not be compressed"
        if self._early:
            early, self._early = self._early, []
            self.write_now(early)
        return self._response

    def write_now(self, texts: list[str]) -> asyncio.Future[None] | None:
        """Write the pieces; a future to await before more when the caller reads slower than the model."""
        if self.gone:
            return None
        transport = self._transport
        if transport is None:
            if not self._response.prepared:
                self._early.extend(texts)
            else:
                self.gone = True
            return None
        if transport.is_closing():
            self.gone = True
            return None
        payload = b"".join([b'{"response":' + json.dumps(text).encode() + b"}\n" for text in texts])
        if self._chunked:
            transport.write(b"%x\r\n%b\r\n" % (len(payload), payload))
        else:
            transport.write(payload)
        if transport.get_write_buffer_size() > HIGH_WATER:
            return asyncio.ensure_future(self._drained(transport))
        return None

    async def _drained(self, transport: asyncio.Transport) -> None:
        # Only a slow caller gets here. The transport tells only its protocol (aiohttp's) when it drains,
        # so poll its buffer; the model server's stream stays paused meanwhile.
        while transport.get_write_buffer_size() > LOW_WATER and not transport.is_closing():  # noqa: ASYNC110
            await asyncio.sleep(DRAIN_POLL_S)

    async def close(self, status: str | None) -> None:
        if self.gone:
            return
        with contextlib.suppress(ConnectionResetError):
            await self._response.write_eof(json.dumps({"done": True, "status": status}).encode() + b"\n")
