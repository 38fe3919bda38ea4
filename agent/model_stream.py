"""Streaming calls to the model server on the box, over plain keep-alive HTTP/1.1 connections.

This is the agent's hot path: every token of every job passes here. With aiohttp's client each
token cost a read into a ``StreamReader``, a future, a task wake-up and a coroutine chain before our
code saw it (bench/agent_stream/: ~30 ms of CPU per 1,000 tokens at 32 streams). Here the model
server's bytes are handled in the protocol's ``data_received``: httptools' response parser (llhttp)
undoes the framing, the body is cut into lines, and a :class:`Decoder` (one per request: Ollama's
NDJSON in :mod:`agent.ollama_stream`, OpenAI's Server-Sent Events in :mod:`agent.openai_stream`) turns
them into output texts, which go to a synchronous sink at once (the job's reporter buffer and, for a
direct stream, the caller's socket). The job's task wakes once, when the stream ends.

HTTP/1.1 only as far as a model server on the box needs it: one request per connection at a time,
``Transfer-Encoding: chunked``, ``Content-Length`` or close-delimited bodies, ``Connection: close``.
Idle connections are kept for reuse; a request on a reused connection that the server had closed
meanwhile is retried once on a new one (nothing of it reached the model yet).

Nothing the model server sends grows without bound: the bytes it may send without any body among
them (status line and headers, a chunk-size line and its extensions, trailers), one line and
an error body each have a limit; past it the stream fails as any broken stream does.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Protocol
from urllib.parse import urlsplit

import httptools

from shared.errors import ModelServerError, ModelServerUnreachable, StreamFailed
from shared.models import JobResult

__all__ = ["Decoder", "ModelStreams", "Sink"]

Sink = Callable[[list[str]], Awaitable[None] | None]  # returns something to await before reading on (backpressure)


class Decoder(Protocol):
    """One response's body format: complete lines in, output texts (and, at its end, the counters) out."""

    def pieces(self, lines: list[bytes]) -> tuple[list[str], JobResult | None]:
        """The output texts of ``lines``, and the final counters if the stream's end is among them.
        Raises :class:`~shared.errors.ModelServerError` (or ``ValueError``) for what the stream says went wrong."""
        ...

    def at_end(self) -> JobResult | None:
        """The body ended without the stream's own end marker: the counters if that is an end, else None."""
        ...


# The parser keeps a header's name and value until it is complete: bytes without any body among them
# are limited (checked after each read: asyncio reads at most 256 KiB at a time).
MAX_FRAMING_BYTES = 64 * 1024
# One line: a token's line is small, but Ollama's /api/generate final line carries the whole context
# (one integer per token: under 1 MiB at 128k tokens).
MAX_LINE_BYTES = 4 * 1024 * 1024
MAX_ERROR_BODY = 64 * 1024
MAX_IDLE = 64


class _Exchange(asyncio.Protocol):
    """One connection; one request-response at a time."""

    def __init__(
        self, loop: asyncio.AbstractEventLoop, release: Callable[[_Exchange], None], lost: Callable[[_Exchange], None]
    ) -> None:
        self._loop = loop
        self._release = release  # back to the pool once a response has been read to its end
        self._lost = lost
        self.transport: asyncio.Transport | None = None
        self._resume_task: asyncio.Task[None] | None = None
        self._reset(None, None)
        self._over = True  # no exchange yet

    def _reset(self, sink: Sink | None, decoder: Decoder | None) -> None:
        self._sink = sink
        self._decoder = decoder
        self._parser = httptools.HttpResponseParser(self)
        self._status = 0
        self._head_done = False
        self._framed = False  # Content-Length or chunked: the body does not end with the connection
        self._parts: list[bytes] = []  # body bytes of the current read, handed on once the read is parsed
        self._complete = False  # the parser saw the end of the response
        self._messages = 0
        self._framing_bytes = 0  # bytes read since the last body byte
        self._line_tail = b""
        self._keep_alive = False
        self._error_body = b""
        self.got_bytes = False
        self._over = False  # the response was read to its end, or failed
        self.done: asyncio.Future[JobResult] = self._loop.create_future()  # resolved by the final line

    # --- asyncio.Protocol
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport = None
        self._lost(self)
        if self._over:
            return
        if self._head_done and not self._framed:
            try:
                self._body(b"", end=True)  # close-delimited body: the close is its end
            except (ModelServerError, ValueError) as error:
                self._fail(error if isinstance(error, ModelServerError) else ModelServerError(str(error)))
            if self._over:
                return
        self._fail(
            ModelServerUnreachable(
                "the model server closed the connection" + ("" if self.got_bytes else " before answering")
            )
        )

    def data_received(self, data: bytes) -> None:
        if self._over:
            return
        self.got_bytes = True
        try:
            self._feed(data)
        except (ModelServerError, StreamFailed) as exc:
            self._fail(exc)
        except Exception as exc:
            self._fail(ModelServerError(f"bad stream from the model server: {type(exc).__name__}: {exc}"))

    # --- httptools' parser callbacks (during feed_data: they only take note)
    def on_message_begin(self) -> None:
        self._messages += 1

    def on_header(self, name: bytes, value: bytes) -> None:
        name = name.lower()
        if name == b"content-length" or (name == b"transfer-encoding" and b"chunked" in value.lower()):
            self._framed = True

    def on_headers_complete(self) -> None:
        self._head_done = True
        self._status = self._parser.get_status_code()

    def on_body(self, body: bytes) -> None:
        self._parts.append(body)

    def on_message_complete(self) -> None:
        self._complete = True
        # Asked here: once this callback returns, the parser forgets the response's Connection header.
        self._keep_alive = self._parser.should_keep_alive()

    # --- parsing
    def _feed(self, data: bytes) -> None:
        """Parse one read, then hand its body on in one piece: one sink call per read, as it came."""
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserError:
            if not self._complete:
                raise
            self._keep_alive = False  # bytes after the end of the response: do not reuse the connection
        if self._messages > 1:
            self._keep_alive = False
        if self._parts:
            parts, self._parts = self._parts, []
            self._framing_bytes = 0
            self._body(parts[0] if len(parts) == 1 else b"".join(parts), end=self._complete)
        elif self._complete:
            self._body(b"", end=True)
        else:
            self._framing_bytes += len(data)
            if self._framing_bytes > MAX_FRAMING_BYTES:
                what = "response headers" if not self._head_done else "chunk framing (size lines, trailers)"
                raise ModelServerError(f"the model server sent over {MAX_FRAMING_BYTES} bytes of {what} without data")

    def _body(self, data: bytes, *, end: bool) -> None:
        if self._status != 200:
            self._error_part(data, end)
            return
        if self.done.done():  # the final line came before the end of the body (its last chunk)
            if end:
                self._end()
            return
        assert self._decoder is not None
        texts, result = self._decoder.pieces(self._lines(data, end))
        if texts and self._sink is not None:
            self._deliver(texts)
        if result is None and end:
            result = self._decoder.at_end()
            if result is None:
                self._fail(ModelServerError("the stream ended without a final line"))
                return
        if result is not None:
            self._sink = None
            self.done.set_result(result)
            if end:
                self._end()

    def _error_part(self, data: bytes, end: bool) -> None:
        room = MAX_ERROR_BODY - len(self._error_body)
        if room > 0 and data:
            self._error_body += data[:room]
        if end:
            self._fail(StreamFailed(self._status, self._error_body))

    def _lines(self, data: bytes, end: bool) -> list[bytes]:
        """The complete lines of the body so far; an incomplete last line waits for the next read."""
        lines = (self._line_tail + data).split(b"\n") if self._line_tail else data.split(b"\n")
        self._line_tail = lines.pop()
        if len(self._line_tail) > MAX_LINE_BYTES:
            raise ModelServerError(f"the model server sent a stream line over {MAX_LINE_BYTES} bytes")
        if end and self._line_tail.strip():
            lines.append(self._line_tail)
            self._line_tail = b""
        return lines

    def _deliver(self, texts: list[str]) -> None:
        assert self._sink is not None
        pending = self._sink(texts)
        if pending is not None and self.transport is not None:
            self.transport.pause_reading()  # the caller reads slower than the model writes: wait for it
            self._resume_task = self._loop.create_task(self._resume_after(pending))

    async def _resume_after(self, pending: Awaitable[None]) -> None:
        await pending
        if self.transport is not None:
            self.transport.resume_reading()

    def _end(self) -> None:
        """The response was read to its end: the connection serves the next request, unless it closes."""
        self._over = True
        self._sink = None
        if self._keep_alive and self.transport is not None and not self.transport.is_closing():
            self._release(self)
        elif self.transport is not None:
            self.transport.close()

    def _fail(self, exc: Exception) -> None:
        self._over = True
        self._sink = None
        if not self.done.done():
            self.done.set_exception(exc)
        if self.transport is not None:
            self.transport.close()

    def abort(self) -> None:
        """The job was cancelled or timed out: closing the connection stops the generation."""
        self._over = True
        self._sink = None
        if self.transport is not None:
            self.transport.close()

    def start(self, request: bytes, sink: Sink, decoder: Decoder) -> asyncio.Future[JobResult]:
        assert self.transport is not None
        self._reset(sink, decoder)
        self.transport.write(request)
        return self.done


class ModelStreams:
    """Streaming calls to one model server, on a pool of keep-alive connections.

    ``accept`` is the ``Accept`` header of every request; ``headers`` are more header lines sent with
    each (``Authorization``, as bytes ending in CRLF), built once here, not per request."""

    def __init__(self, base_url: str, *, accept: bytes, headers: bytes = b"", connect_timeout_s: float = 5.0) -> None:
        url = urlsplit(base_url)
        if url.scheme not in ("http", "https") or not url.hostname:
            raise ValueError(f"model server URL must be http(s)://host[:port], got {base_url!r}")
        self._host = url.hostname
        self._tls = url.scheme == "https"
        self._port = url.port or (443 if self._tls else 80)
        self._prefix = url.path.rstrip("/").encode()
        self._head = (
            b" HTTP/1.1\r\nHost: "
            + url.netloc.encode()
            + b"\r\nContent-Type: application/json\r\nAccept: "
            + accept
            + b"\r\n"
            + headers
            + b"Content-Length: "
        )
        self._connect_timeout_s = connect_timeout_s
        self._idle: list[_Exchange] = []
        self._open: set[_Exchange] = set()  # every live connection, idle or busy: close() ends them all
        self._closed = False

    async def _connect(self) -> _Exchange:
        loop = asyncio.get_running_loop()
        try:
            async with asyncio.timeout(self._connect_timeout_s):
                _, protocol = await loop.create_connection(
                    lambda: _Exchange(loop, self._released, self._open.discard),
                    self._host,
                    self._port,
                    ssl=self._tls or None,
                )
        except (OSError, TimeoutError) as exc:
            raise ModelServerUnreachable(f"cannot connect to the model server: {type(exc).__name__}: {exc}") from None
        self._open.add(protocol)
        return protocol

    def _request(self, path: str, body: bytes) -> bytes:
        return b"POST " + self._prefix + path.encode() + self._head + str(len(body)).encode() + b"\r\n\r\n" + body

    async def post(self, path: str, body: bytes, sink: Sink, decoder: Decoder) -> JobResult:
        """POST the JSON ``body`` to ``path``; hand each read's texts to ``sink``; return the final counters.

        A refusal (any status but 200) raises :class:`~shared.errors.StreamFailed` with the server's status
        and body; a broken stream :class:`~shared.errors.ModelServerError`; no connection, or one lost
        mid-answer, :class:`~shared.errors.ModelServerUnreachable`."""
        request = self._request(path, body)
        while self._idle:
            exchange = self._idle.pop()
            if exchange.transport is None or exchange.transport.is_closing():
                continue
            try:
                return await self._run(exchange, request, sink, decoder)
            except ModelServerUnreachable:
                if exchange.got_bytes:  # it had started answering: the generation may have run
                    raise
                # an idle connection the server had closed: nothing reached the model; use a new one
        return await self._run(await self._connect(), request, sink, decoder)

    async def _run(self, exchange: _Exchange, request: bytes, sink: Sink, decoder: Decoder) -> JobResult:
        done = exchange.start(request, sink, decoder)
        try:
            return await done
        except BaseException:
            exchange.abort()
            raise

    def _released(self, exchange: _Exchange) -> None:
        if not self._closed and len(self._idle) < MAX_IDLE:
            self._idle.append(exchange)
        elif exchange.transport is not None:
            exchange.transport.close()

    def close(self) -> None:
        self._closed = True
        for exchange in list(self._open):
            if exchange.transport is not None:
                exchange.transport.close()
        self._idle.clear()
