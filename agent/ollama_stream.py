"""The streaming ``/api/generate`` and ``/api/chat`` calls, over a plain keep-alive HTTP/1.1 connection.

This is the agent's hot path: every token of every job passes here. With aiohttp's client each
token cost a read into a ``StreamReader``, a future, a task wake-up and a coroutine chain before our
code saw it (bench/agent_stream.py: ~30 ms of CPU per 1,000 tokens at 32 streams). Here the model
server's bytes are handled in the protocol's ``data_received``: the chunked framing is undone, each
NDJSON line parsed, and the pieces handed to a synchronous sink at once (the job's reporter buffer
and, for a direct stream, the caller's socket). The job's task wakes once, when the stream ends.

HTTP/1.1 only as far as a model server on the box needs it: one request per connection at a time,
``Transfer-Encoding: chunked``, ``Content-Length`` or close-delimited bodies, ``Connection: close``.
Idle connections are kept for reuse; a request on a reused connection that the server had closed
meanwhile is retried once on a new one (nothing of it reached the model yet).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import urlsplit

from shared.errors import ModelServerError, ModelServerUnreachable, StreamFailed
from shared.models import JobResult

__all__ = ["OllamaStreams", "Sink"]

Sink = Callable[[list[str]], Awaitable[None] | None]  # returns something to await before reading on (backpressure)

MAX_HEADER_BYTES = 64 * 1024
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
        self._reset(None, False)
        self._over = True  # no exchange yet

    def _reset(self, sink: Sink | None, chat: bool) -> None:
        self._sink = sink
        self._chat = chat
        self._buf = b""
        self._in_headers = True
        self._status = 0
        self._chunked = False
        self._remaining: int | None = None  # Content-Length left; None: chunked or until close
        self._chunk_left = 0  # bytes of the current chunk's data still to come
        self._chunk_state = "size"  # size | data | crlf | trailer
        self._line_tail = b""
        self._keep_alive = True
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
        if not self._in_headers and self._remaining is None and not self._chunked:
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
            if self._in_headers:
                self._buf += data
                end = self._buf.find(b"\r\n\r\n")
                if end < 0:
                    if len(self._buf) > MAX_HEADER_BYTES:
                        raise ModelServerError("the model server's response headers are too large")
                    return
                head, data = self._buf[:end], self._buf[end + 4 :]
                self._buf = b""
                self._headers(head)
            if self._chunked:
                self._dechunk(data)
            else:
                self._body(data, end=False)
        except (ModelServerError, StreamFailed) as exc:
            self._fail(exc)
        except Exception as exc:
            self._fail(ModelServerError(f"bad stream from the model server: {type(exc).__name__}: {exc}"))

    # --- parsing
    def _headers(self, head: bytes) -> None:
        lines = head.split(b"\r\n")
        parts = lines[0].split(b" ", 2)
        if len(parts) < 2 or not parts[0].startswith(b"HTTP/1."):
            raise ModelServerError(f"not an HTTP response: {lines[0][:80]!r}")
        self._status = int(parts[1])
        self._keep_alive = parts[0] == b"HTTP/1.1"
        for line in lines[1:]:
            name, _, value = line.partition(b":")
            name, value = name.strip().lower(), value.strip().lower()
            if name == b"transfer-encoding" and b"chunked" in value:
                self._chunked = True
            elif name == b"content-length":
                self._remaining = int(value)
            elif name == b"connection":
                self._keep_alive = value == b"keep-alive" or (self._keep_alive and value != b"close")
        if self._chunked:
            self._remaining = None
        self._in_headers = False
        if self._remaining == 0:
            self._body(b"", end=True)
        elif self._status != 200 and self._remaining is None and not self._chunked:
            self._keep_alive = False  # an error body that ends with the connection

    def _dechunk(self, data: bytes) -> None:
        buf = self._buf + data if self._buf else data
        self._buf = b""
        pos, size = 0, len(buf)
        out: list[bytes] = []
        while pos < size:
            if self._chunk_state == "data":
                take = min(self._chunk_left, size - pos)
                out.append(buf[pos : pos + take])
                pos += take
                self._chunk_left -= take
                if self._chunk_left == 0:
                    self._chunk_state = "crlf"
            elif self._chunk_state == "crlf":
                if size - pos < 2:
                    break
                pos += 2
                self._chunk_state = "size"
            else:  # size line, or trailer lines after the last chunk
                eol = buf.find(b"\r\n", pos)
                if eol < 0:
                    break
                line = buf[pos:eol]
                pos = eol + 2
                if self._chunk_state == "trailer":
                    if not line:
                        self._body(b"".join(out), end=True)
                        return
                    continue
                self._chunk_left = int(line.split(b";", 1)[0], 16)
                self._chunk_state = "data" if self._chunk_left else "trailer"
        self._buf = buf[pos:]
        if out:
            self._body(b"".join(out), end=False)

    def _body(self, data: bytes, *, end: bool) -> None:
        if self._remaining is not None:
            data = data[: self._remaining]
            self._remaining -= len(data)
            end = end or self._remaining == 0
        if self._status != 200:
            if len(self._error_body) < MAX_ERROR_BODY:
                self._error_body += data
            if end:
                self._fail(StreamFailed(self._status, self._error_body[:MAX_ERROR_BODY]))
            return
        if self.done.done():  # the final line came before the end of the body (its last chunk)
            if end:
                self._end()
            return
        lines = (self._line_tail + data).split(b"\n") if self._line_tail else data.split(b"\n")
        self._line_tail = lines.pop()
        if end and self._line_tail.strip():
            lines.append(self._line_tail)
            self._line_tail = b""
        texts: list[str] = []
        chat = self._chat
        result: JobResult | None = None
        for line in lines:
            if not line.strip():
                continue
            piece = json.loads(line)
            if "error" in piece:
                raise ModelServerError(str(piece["error"]))
            text = piece["message"].get("content", "") if chat else piece.get("response", "")
            if text:
                texts.append(text)
            if piece.get("done"):
                result = _result(piece)
                break
        if texts and self._sink is not None:
            pending = self._sink(texts)
            if pending is not None and self.transport is not None:
                self.transport.pause_reading()  # the caller reads slower than the model writes: wait for it
                self._resume_task = self._loop.create_task(self._resume_after(pending))
        if result is not None:
            self._sink = None
            self.done.set_result(result)
            if end:
                self._end()
        elif end:
            self._fail(ModelServerError("the stream ended without a final line"))

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

    def start(self, request: bytes, sink: Sink, chat: bool) -> asyncio.Future[JobResult]:
        assert self.transport is not None
        self._reset(sink, chat)
        self.transport.write(request)
        return self.done


def _result(piece: dict[str, Any]) -> JobResult:
    return JobResult(
        done_reason=piece.get("done_reason"),
        prompt_eval_count=piece.get("prompt_eval_count"),
        eval_count=piece.get("eval_count"),
        total_duration_ns=piece.get("total_duration"),
        load_duration_ns=piece.get("load_duration"),
    )


class OllamaStreams:
    """Streaming calls to one model server, on a pool of keep-alive connections."""

    def __init__(self, base_url: str, *, connect_timeout_s: float = 5.0) -> None:
        url = urlsplit(base_url)
        if url.scheme not in ("http", "https") or not url.hostname:
            raise ValueError(f"model server URL must be http(s)://host[:port], got {base_url!r}")
        self._host = url.hostname
        self._tls = url.scheme == "https"
        self._port = url.port or (443 if self._tls else 80)
        self._prefix = url.path.rstrip("/")
        self._host_header = url.netloc.encode()
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
        return (
            b"POST "
            + self._prefix.encode()
            + path.encode()
            + b" HTTP/1.1\r\nHost: "
            + self._host_header
            + b"\r\nContent-Type: application/json\r\nAccept: application/x-ndjson\r\nContent-Length: "
            + str(len(body)).encode()
            + b"\r\n\r\n"
            + body
        )

    async def stream(self, path: str, body: dict[str, Any], sink: Sink, *, chat: bool) -> JobResult:
        """POST ``body`` to ``path``; hand each read's texts to ``sink``; return the final counters."""
        request = self._request(path, json.dumps(body).encode())
        while self._idle:
            exchange = self._idle.pop()
            if exchange.transport is None or exchange.transport.is_closing():
                continue
            try:
                return await self._run(exchange, request, sink, chat)
            except ModelServerUnreachable:
                if exchange.got_bytes:  # it had started answering: the generation may have run
                    raise
                # an idle connection the server had closed: nothing reached the model; use a new one
        return await self._run(await self._connect(), request, sink, chat)

    async def _run(self, exchange: _Exchange, request: bytes, sink: Sink, chat: bool) -> JobResult:
        done = exchange.start(request, sink, chat)
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
