"""A lean HTTP/1.1 client for NDJSON streams (and OpenAI's SSE ones) that timestamps every line as it arrives.

The benchmark client shares two cores with the servers it measures, so it does as little as
possible per chunk: an ``asyncio.Protocol`` that de-chunks the body and stamps each complete line
with ``perf_counter`` in ``data_received`` (the earliest moment Python can see it). Lines are
classified with a byte search (a line carrying ``"done"`` true ends the stream, ``"error"`` fails it);
JSON is parsed only afterwards, off the clock, to check the text (:meth:`StreamResult.text`).
With ``sse=True`` the body is Server-Sent Events: a ``data:`` event with text is a token, ``data: [DONE]``
ends the stream, an error event fails it (the role chunk and the usage chunk carry no text: not tokens).
One connection per request (``Connection: close``), the same for every path measured.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import time
from dataclasses import dataclass, field

__all__ = ["StreamResult", "build_request", "stream"]


def build_request(host: str, port: int, path: str, body: bytes, headers: dict[str, str] | None = None) -> bytes:
    """Bytes of one POST, built before the clock starts (signatures included)."""
    lines = [
        f"POST {path} HTTP/1.1",
        f"Host: {host}:{port}",
        "Content-Type: application/json",
        f"Content-Length: {len(body)}",
        "Connection: close",
    ]
    lines += [f"{k}: {v}" for k, v in (headers or {}).items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


@dataclass
class StreamResult:
    t_start: float  # perf_counter before connecting
    status: int = 0
    line_times: list[float] = field(default_factory=list)  # one per token line
    t_end: float = 0.0
    done: bool = False
    error: str | None = None
    body: bytearray = field(default_factory=bytearray)
    sse: bool = False

    @property
    def ok(self) -> bool:
        return self.error is None and self.done and self.status == 200

    @property
    def tokens(self) -> int:
        return len(self.line_times)

    @property
    def ttfc_s(self) -> float | None:
        return self.line_times[0] - self.t_start if self.line_times else None

    def gaps_s(self) -> list[float]:
        t = self.line_times
        return [b - a for a, b in itertools.pairwise(t)]

    def text(self) -> str:
        """The streamed text: ``response`` (generate, gpuq) or ``message.content`` (chat) of each line;
        for SSE, ``choices[0].text`` (completions) or ``choices[0].delta.content`` (chat) of each event."""
        if self.sse:
            return "".join(_sse_texts(bytes(self.body)))
        out = []
        for raw in bytes(self.body).splitlines():
            if not raw.strip():
                continue
            line = json.loads(raw)
            if line.get("done"):
                continue
            out.append(line["response"] if "response" in line else line.get("message", {}).get("content", ""))
        return "".join(out)


def _sse_texts(body: bytes) -> list[str]:
    out = []
    for raw in body.splitlines():
        if not raw.startswith(b"data: ") or raw.strip().endswith(b"[DONE]"):
            continue
        for choice in json.loads(raw[6:]).get("choices") or []:
            out.append(choice.get("text") or (choice.get("delta") or {}).get("content") or "")
    return out


_HEAD, _SIZE, _DATA, _FIXED, _DONE = range(5)


class _Protocol(asyncio.Protocol):
    def __init__(self, request: bytes, result: StreamResult, finished: asyncio.Future[None]) -> None:
        self._request = request
        self._result = result
        self._finished = finished
        self._buf = bytearray()
        self._state = _HEAD
        self._need = 0
        self._scan = 0  # body offset up to which lines were classified
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        transport.write(self._request)

    def _finish(self, error: str | None = None) -> None:
        if self._finished.done():
            return
        self._result.t_end = time.perf_counter()
        if error is not None and self._result.error is None:
            self._result.error = error
        self._state = _DONE
        self._finished.set_result(None)
        if self.transport is not None:
            self.transport.close()

    def _body(self, data: bytes | bytearray, now: float) -> None:
        body = self._result.body
        body += data
        while True:
            end = body.find(b"\n", self._scan)
            if end < 0:
                return
            line = body[self._scan : end]
            self._scan = end + 1
            if not line.strip():
                continue
            if self._result.sse:
                self._sse_line(line, now)
            elif b'"done":true' in line or b'"done": true' in line:
                self._result.done = True
            elif line.startswith(b'{"error"'):
                self._result.error = bytes(line[:300]).decode(errors="replace")
            else:
                self._result.line_times.append(now)

    def _sse_line(self, line: bytes | bytearray, now: float) -> None:
        if not line.startswith(b"data: "):
            return
        if b"[DONE]" in line:
            self._result.done = True
        elif line.startswith(b'data: {"error"'):
            self._result.error = bytes(line[:300]).decode(errors="replace")
        elif b'"choices":[]' not in line and b'"content":""' not in line:  # the usage and role chunks
            self._result.line_times.append(now)

    def _head(self) -> bool:
        end = self._buf.find(b"\r\n\r\n")
        if end < 0:
            return False
        head = bytes(self._buf[:end]).decode("latin-1").split("\r\n")
        del self._buf[: end + 4]
        self._result.status = int(head[0].split()[1])
        headers = {k.strip().lower(): v.strip() for k, _, v in (h.partition(":") for h in head[1:])}
        if headers.get("transfer-encoding", "").lower() == "chunked":
            self._state = _SIZE
        else:
            self._state = _FIXED
            self._need = int(headers.get("content-length", "0"))
        return True

    def data_received(self, data: bytes) -> None:
        try:
            self._parse(data)
        except (ValueError, IndexError) as exc:  # not HTTP/1.1 as we know it: an error, not a crash
            self._finish(f"malformed response: {exc}")

    def _parse(self, data: bytes) -> None:
        now = time.perf_counter()
        self._buf += data
        if self._state == _HEAD and not self._head():
            return
        while self._state != _DONE:
            if self._state == _SIZE:
                end = self._buf.find(b"\r\n")
                if end < 0:
                    return
                size = int(bytes(self._buf[:end]).split(b";")[0], 16)
                del self._buf[: end + 2]
                if size == 0:
                    self._finish(None if self._result.status == 200 else f"HTTP {self._result.status}")
                    return
                self._need, self._state = size, _DATA
            elif self._state == _DATA:
                if len(self._buf) < self._need + 2:
                    return
                self._body(self._buf[: self._need], now)
                del self._buf[: self._need + 2]
                self._state = _SIZE
            else:  # _FIXED: an answer that is not a stream (an error)
                if len(self._buf) < self._need:
                    return
                self._result.body += self._buf[: self._need]
                self._finish(f"HTTP {self._result.status}: {bytes(self._buf[:200]).decode(errors='replace')}")
                return

    def connection_lost(self, exc: Exception | None) -> None:
        if not self._finished.done():
            self._finish(f"connection lost: {exc!r}")


async def stream(host: str, port: int, request: bytes, *, timeout_s: float = 120.0, sse: bool = False) -> StreamResult:
    """Send one pre-built request and read its NDJSON (or, with ``sse``, event) stream to the end."""
    loop = asyncio.get_running_loop()
    result = StreamResult(t_start=time.perf_counter(), sse=sse)
    finished: asyncio.Future[None] = loop.create_future()
    try:
        transport, _ = await loop.create_connection(lambda: _Protocol(request, result, finished), host, port)
    except OSError as exc:
        result.error = f"connect: {exc!r}"
        result.t_end = time.perf_counter()
        return result
    try:
        await asyncio.wait_for(finished, timeout_s)
    except TimeoutError:
        result.error = f"timed out after {timeout_s:g}s"
        result.t_end = time.perf_counter()
    finally:
        transport.close()
    return result
