"""The agent's streaming connection to the model server, over real sockets.

Against the Ollama stand-in: generate and chat, errors, a pooled connection the server has closed.
Against small scripted servers: the HTTP framings a model server may use, reads split anywhere, a
stream that breaks off, and a caller slower than the model (reading pauses until it catches up).
"""

from __future__ import annotations

import asyncio
import contextlib
import tracemalloc
from collections.abc import Awaitable, Callable, Iterator

import pytest

from agent.ollama_stream import MAX_FRAMING_BYTES, MAX_LINE_BYTES, OllamaStreams
from shared.errors import ModelServerError, ModelServerUnreachable, StreamFailed
from shared.fakes.ollama import FakeOllamaConfig, fake_completion_text, serve_in_thread
from shared.tools.devstack import free_port

MODEL = "llama3.2:1b"


@pytest.fixture
def ollama() -> Iterator[str]:
    with serve_in_thread(FakeOllamaConfig(token_delay_s=0.001, load_delay_s=0.0)) as server:
        yield server.url


class Collect:
    def __init__(self) -> None:
        self.reads: list[list[str]] = []

    def __call__(self, texts: list[str]) -> None:
        self.reads.append(texts)

    @property
    def text(self) -> str:
        return "".join(t for read in self.reads for t in read)


def test_generate_and_chat_stream_the_exact_text_and_the_final_counters(ollama: str) -> None:
    async def main() -> None:
        streams = OllamaStreams(ollama)
        out = Collect()
        result = await streams.stream(
            "/api/generate", {"model": MODEL, "prompt": "hello", "stream": True}, out, chat=False
        )
        assert out.text == fake_completion_text(MODEL, "hello", 24) and result.eval_count == 24
        chat = Collect()
        result = await streams.stream(
            "/api/chat",
            {"model": MODEL, "stream": True, "messages": [{"role": "user", "content": "hi"}]},
            chat,
            chat=True,
        )
        assert chat.text == fake_completion_text(MODEL, "hi", 24) and result.done_reason == "stop"
        streams.close()

    asyncio.run(main())


def test_an_unknown_model_is_the_servers_404_with_its_body(ollama: str) -> None:
    async def main() -> None:
        streams = OllamaStreams(ollama)
        with pytest.raises(StreamFailed) as failed:
            await streams.stream("/api/generate", {"model": "nope:1b", "prompt": "x"}, Collect(), chat=False)
        assert failed.value.status == 404 and b"nope:1b" in failed.value.body
        streams.close()

    asyncio.run(main())


def test_no_server_is_unreachable() -> None:
    async def main() -> None:
        streams = OllamaStreams(f"http://127.0.0.1:{free_port()}")
        with pytest.raises(ModelServerUnreachable):
            await streams.stream("/api/generate", {"model": MODEL, "prompt": "x"}, Collect(), chat=False)

    asyncio.run(main())


def test_a_pooled_connection_the_server_closed_is_replaced_without_losing_the_job() -> None:
    port = free_port()
    config = FakeOllamaConfig(token_delay_s=0.0, load_delay_s=0.0)

    async def run_one(streams: OllamaStreams, prompt: str) -> str:
        out = Collect()
        await streams.stream("/api/generate", {"model": MODEL, "prompt": prompt}, out, chat=False)
        return out.text

    async def main() -> None:
        streams = OllamaStreams(f"http://127.0.0.1:{port}")
        with serve_in_thread(config, port=port):
            assert await run_one(streams, "first") == fake_completion_text(MODEL, "first", 24)
        with serve_in_thread(config, port=port):  # a new server: the pooled connection is dead
            assert await run_one(streams, "second") == fake_completion_text(MODEL, "second", 24)
        streams.close()

    asyncio.run(main())


# --- scripted servers ------------------------------------------------------------------------------
Script = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


async def _serve(script: Script) -> tuple[asyncio.Server, str]:
    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        await script(reader, writer)
        writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    return server, f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}"


LINES = [
    b'{"response":"Hel","done":false}\n',
    b'{"response":"lo","done":false}\n',
    b'{"response":"","done":true,"done_reason":"stop","eval_count":2}\n',
]


def _chunked(parts: list[bytes]) -> bytes:
    return b"".join(b"%x\r\n%b\r\n" % (len(p), p) for p in parts) + b"0\r\n\r\n"


@pytest.mark.parametrize("framing", ["chunked", "content-length", "close"])
def test_every_framing_read_a_byte_at_a_time_gives_the_same_text(framing: str) -> None:
    body = b"".join(LINES)
    head = {
        "chunked": b"Transfer-Encoding: chunked\r\n",
        "content-length": b"Content-Length: %d\r\n" % len(body),
        "close": b"Connection: close\r\n",
    }[framing]
    payload = (
        b"HTTP/1.1 200 OK\r\nContent-Type: application/x-ndjson\r\n"
        + head
        + b"\r\n"
        + (_chunked(LINES) if framing == "chunked" else body)
    )

    async def script(_: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        for i in range(len(payload)):
            writer.write(payload[i : i + 1])
            await writer.drain()

    async def main() -> None:
        server, url = await _serve(script)
        out, streams = Collect(), OllamaStreams(url)
        result = await streams.stream("/api/generate", {}, out, chat=False)
        assert out.text == "Hello" and result.eval_count == 2
        streams.close()
        server.close()

    asyncio.run(main())


@pytest.mark.parametrize(
    ("lines", "message"),
    [
        (LINES[:2], "ended without a final line"),
        ([LINES[0], b'{"error":"out of memory"}\n'], "out of memory"),
        ([LINES[0], b"not json\n"], "bad stream"),
    ],
)
def test_a_stream_that_breaks_off_or_says_error_fails_with_the_reason(lines: list[bytes], message: str) -> None:
    async def script(_: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n" + _chunked(lines))
        await writer.drain()

    async def main() -> None:
        server, url = await _serve(script)
        with pytest.raises(ModelServerError, match=message):
            await OllamaStreams(url).stream("/api/generate", {}, Collect(), chat=False)
        server.close()

    asyncio.run(main())


def test_reading_pauses_while_the_caller_is_slower_than_the_model() -> None:
    async def main() -> None:
        sent_second = asyncio.Event()

        async def script(_: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            writer.write(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n" + _chunked([LINES[0]])[:-5])
            await writer.drain()
            await first_read.wait()
            writer.write(_chunked([LINES[1], LINES[2]]))
            await writer.drain()
            sent_second.set()

        first_read = asyncio.Event()
        caught_up: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        reads: list[list[str]] = []

        def slow_caller(texts: list[str]) -> asyncio.Future[None] | None:
            reads.append(texts)
            first_read.set()
            return caught_up if len(reads) == 1 else None

        server, url = await _serve(script)
        streams = OllamaStreams(url)
        streaming = asyncio.create_task(streams.stream("/api/generate", {}, slow_caller, chat=False))
        await sent_second.wait()
        for _ in range(20):  # loop turns: the rest of the stream is on the socket, and stays there
            await asyncio.sleep(0)
        assert reads == [["Hel"]]
        caught_up.set_result(None)
        result = await streaming
        assert reads == [["Hel"], ["lo"]] and result.eval_count == 2
        streams.close()
        server.close()

    asyncio.run(main())


# --- a server that never stops sending ------------------------------------------------------------
CHUNKED_HEAD = b"HTTP/1.1 200 OK\r\nContent-Type: application/x-ndjson\r\nTransfer-Encoding: chunked\r\n\r\n"
BLOCK = 64 * 1024


@pytest.mark.parametrize(
    ("start", "block", "message"),
    [
        pytest.param(b"HTTP/1.1 200 OK\r\nX-Padding: ", b"a" * BLOCK, "response headers", id="endless-header"),
        pytest.param(
            b"HTTP/1.1 200 OK\r\n",
            b"".join(b"X-Pad-%d: a\r\n" % i for i in range(4000))[:BLOCK],
            "response headers",
            id="endless-header-lines",
        ),
        pytest.param(CHUNKED_HEAD, b"f" * BLOCK, "bad stream.*[Cc]hunk size", id="endless-chunk-size-digits"),
        pytest.param(CHUNKED_HEAD + b"5;", b"x" * BLOCK, "chunk framing", id="endless-chunk-extension"),
        pytest.param(
            CHUNKED_HEAD, b"%x\r\n%b\r\n" % (BLOCK, b"a" * BLOCK), "stream line over", id="endless-ndjson-line"
        ),
    ],
)
def test_a_server_that_never_ends_a_line_fails_the_stream_within_its_bound(
    start: bytes, block: bytes, message: str
) -> None:
    sent = [0]
    stopped = asyncio.Event()

    async def script(_: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(start)
        with contextlib.suppress(ConnectionError):
            while True:  # until the client gives up on us
                writer.write(block)
                await writer.drain()
                sent[0] += len(block)
        stopped.set()

    async def main() -> None:
        server, url = await _serve(script)
        tracemalloc.start()
        try:
            async with asyncio.timeout(30):
                with pytest.raises(ModelServerError, match=message):
                    await OllamaStreams(url).stream("/api/generate", {}, Collect(), chat=False)
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
        await asyncio.wait_for(stopped.wait(), 10)  # the failed stream closed the connection
        server.close()
        print(f"sent {sent[0]} bytes before the stream failed; peak traced memory {peak} bytes")
        bound = MAX_LINE_BYTES if "line" in message else MAX_FRAMING_BYTES
        assert peak < 3 * bound + 1024 * 1024  # the buffer (and a copy of it) at its limit, not what was sent

    asyncio.run(main())


@pytest.mark.parametrize(("connection", "reused"), [(b"keep-alive", True), (b"close", False)])
def test_a_connection_is_reused_unless_the_response_said_close(connection: bytes, reused: bool) -> None:
    body = b"".join(LINES)
    connections = [0]
    handlers: list[asyncio.Task[None]] = []

    async def serve_connection(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(asyncio.IncompleteReadError, ConnectionError):
            while not reader.at_eof():
                await reader.readuntil(b"\r\n\r\n")
                await reader.readexactly(2)  # the body of the request: {}
                writer.write(
                    b"HTTP/1.1 200 OK\r\nConnection: %b\r\nContent-Length: %d\r\n\r\n%b" % (connection, len(body), body)
                )
                await writer.drain()
        writer.close()

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        connections[0] += 1
        handlers.append(asyncio.create_task(serve_connection(reader, writer)))

    async def main() -> None:
        server = await asyncio.start_server(handle, "127.0.0.1", 0)
        streams = OllamaStreams(f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}")
        for _ in range(3):
            out = Collect()
            await streams.stream("/api/generate", {}, out, chat=False)
            assert out.text == "Hello"
        assert connections[0] == (1 if reused else 3)
        streams.close()
        server.close()
        await asyncio.wait_for(asyncio.gather(*handlers), 10)  # each sees its connection end

    asyncio.run(main())
