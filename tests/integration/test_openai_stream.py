"""The openai backend's event streams over real sockets, from small scripted servers: what vLLM, llama.cpp,
SGLang and TGI may send (CRLF line ends, comments and other SSE fields, reads split anywhere, no usage, no
``[DONE]``, either error shape) and the request the backend sends them."""

from __future__ import annotations

import asyncio
import json

import pytest

from agent.model_stream import ModelStreams
from agent.openai_stream import SseDecoder
from shared.errors import ModelServerError
from shared.models import JobResult
from tests.integration.test_ollama_stream import Collect, _chunked

CHUNK = (
    '{{"id":"c","object":"chat.completion.chunk","choices":[{{"index":0,"delta":{delta},"finish_reason":{reason}}}]}}'
)
USAGE = b'data: {"id":"c","choices":[],"usage":{"prompt_tokens":9,"completion_tokens":2,"total_tokens":11}}\n\n'


def event(delta: str, reason: str = "null", end: bytes = b"\n") -> bytes:
    return b"data: " + CHUNK.format(delta=delta, reason=reason).encode() + end + end


HELLO = [
    event('{"role":"assistant","content":""}'),
    event('{"content":"Hel"}'),
    event('{"content":"lo"}', '"stop"'),
    USAGE,
    b"data: [DONE]\n\n",
]


def _stream(parts: list[bytes], *, split: bool = False, requests: list[bytes] | None = None) -> tuple[str, JobResult]:
    """Serve ``parts`` as a chunked SSE body (a byte per write when ``split``); the text and the counters."""
    payload = b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\n"
    payload += _chunked(parts)

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = await reader.readuntil(b"\r\n\r\n")
        length = int(head.lower().split(b"content-length: ")[1].split(b"\r\n")[0])
        (requests if requests is not None else []).append(head + await reader.readexactly(length))
        step = 1 if split else len(payload)
        for i in range(0, len(payload), step):
            writer.write(payload[i : i + step])
            await writer.drain()
        writer.close()

    async def main() -> tuple[str, JobResult]:
        server = await asyncio.start_server(handle, "127.0.0.1", 0)
        url = f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}"
        out = Collect()
        streams = ModelStreams(url, accept=b"text/event-stream", headers=b"Authorization: Bearer k\r\n")
        try:
            result = await streams.post("/v1/chat/completions", b'{"stream":true}', out, SseDecoder(True))
        finally:
            streams.close()
            server.close()
        return out.text, result

    return asyncio.run(main())


def test_a_stream_read_a_byte_at_a_time_gives_the_text_and_the_servers_usage() -> None:
    text, result = _stream(HELLO, split=True)
    assert text == "Hello"
    assert result.eval_count == 2 and result.prompt_eval_count == 9 and result.done_reason == "stop"


def test_crlf_comments_and_other_fields_are_read_as_the_sse_format_says() -> None:
    parts = [
        b": ping\r\n\r\n",
        b"event: message\r\nid: 1\r\nretry: 100\r\n" + event('{"content":"Hel"}', end=b"\r\n"),
        event('{"content":"lo"}', '"length"', end=b"\r\n"),
        b"data: [DONE]\r\n\r\n",
    ]
    text, result = _stream(parts)
    assert text == "Hello" and result.done_reason == "length"
    assert result.eval_count == 2  # no usage chunk: the texts are counted


def test_a_body_that_ends_after_the_finish_reason_without_done_is_an_end() -> None:
    text, result = _stream(HELLO[:3])
    assert text == "Hello" and result.done_reason == "stop"


@pytest.mark.parametrize(
    ("parts", "message"),
    [
        pytest.param(HELLO[:2], "ended without a final line", id="cut-off"),
        pytest.param(
            [HELLO[1], b'data: {"error":{"message":"CUDA out of memory","type":"InternalServerError"}}\n\n'],
            "CUDA out of memory",
            id="error-event",
        ),
        pytest.param(
            [HELLO[1], b'data: {"object":"error","message":"engine dead","type":"BadRequestError","code":400}\n\n'],
            "engine dead",
            id="old-vllm-error",
        ),
        pytest.param([HELLO[1], b"data: {not json\n\n"], "bad stream", id="bad-json"),
        pytest.param([HELLO[1], HELLO[-1]], "before the generation finished", id="done-without-finish-reason"),
    ],
)
def test_a_stream_that_breaks_off_or_says_error_fails_with_the_reason(parts: list[bytes], message: str) -> None:
    with pytest.raises(ModelServerError, match=message):
        _stream(parts)


def test_the_request_asks_for_events_with_the_configured_key() -> None:
    requests: list[bytes] = []
    _stream(HELLO, requests=requests)
    head, _, body = requests[0].partition(b"\r\n\r\n")
    assert head.startswith(b"POST /v1/chat/completions HTTP/1.1\r\n")
    assert b"\r\nAccept: text/event-stream\r\n" in head and b"\r\nAuthorization: Bearer k\r\n" in head
    assert json.loads(body) == {"stream": True}
