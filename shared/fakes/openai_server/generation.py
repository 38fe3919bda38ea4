"""One generation: tokens on a fixed schedule, streamed as Server-Sent Events or answered as one object.

Streamed as vLLM does: the response headers at once; with the first token a chunk carrying the role
(chat: ``delta: {"role": "assistant", "content": ""}``), then one chunk per token, the last one with
its ``finish_reason``; asked with ``stream_options.include_usage``, one more chunk with empty
``choices`` and the ``usage``; then ``data: [DONE]``. Token faults as the Ollama stand-in's: ``fail``
closes the connection after N tokens (a server that died), ``stall`` stops sending and holds the
connection, ``error`` sends an ``{"error": ...}`` event and ``[DONE]``; a client that goes away stops
the generation at the next token."""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import time
from collections.abc import Iterator
from dataclasses import dataclass, field

from aiohttp import web

from shared.fakes.ollama.responses import closing
from shared.fakes.ollama.state import FakeOllamaState
from shared.fakes.ollama.text import prompt_key
from shared.fakes.openai_server.requests import Call
from shared.fakes.openai_server.responses import EVENT_STREAM, dumps, error_body, error_response, json_response, sse
from shared.fakes.pacing import token_slot

__all__ = ["Generation"]

_DONE = b"data: [DONE]\n\n"


@dataclass
class Generation:
    request: web.Request
    state: FakeOllamaState
    call: Call
    source: Iterator[str]
    produced: list[str] = field(default_factory=list)
    chunk_id: str = field(default_factory=lambda: secrets.token_hex(16))
    created: int = field(default_factory=lambda: int(time.time()))

    # --- chunks
    def _head(self) -> str:
        if self.call.kind == "chat":
            return (
                f'{{"id":"chatcmpl-{self.chunk_id}","object":"chat.completion.chunk","created":{self.created},"model":'
            )
        return f'{{"id":"cmpl-{self.chunk_id}","object":"text_completion","created":{self.created},"model":'

    def _usage(self) -> str:
        p, c = self.call.prompt_tokens, len(self.produced)
        return f'{{"prompt_tokens":{p},"total_tokens":{p + c},"completion_tokens":{c}}}'

    def _chunk(self, head: str, text: str | None, finish: str | None) -> bytes:
        reason = "null" if finish is None else f'"{finish}"'
        if self.call.kind == "chat":
            delta = '{"role":"assistant","content":""}' if text is None else '{"content":' + dumps(text) + "}"
            choice = f'{{"index":0,"delta":{delta},"logprobs":null,"finish_reason":{reason}'
        else:
            choice = '{"index":0,"text":' + dumps(text or "") + f',"logprobs":null,"finish_reason":{reason}'
        choice += ',"stop_reason":null}' if finish is not None or self.call.kind == "completion" else "}"
        usage = ',"usage":' + self._usage() if self.call.continuous_usage else ""
        return sse(head + dumps(self.call.model) + ',"choices":[' + choice + "]" + usage + "}")

    # --- running
    async def run(self) -> web.StreamResponse:
        with self.state.generating(self.request.path, prompt_key(self.call.prompt)) as fault:
            if self.call.stream:
                return await self._run_stream(fault)
            return await self._run_whole(fault)

    def _interrupted(self) -> bool:
        return closing(self.request) or self.state.shutting_down.is_set()

    async def _run_stream(self, fault: tuple[str, int, str] | None) -> web.StreamResponse:
        resp = web.StreamResponse(headers={"Content-Type": f"{EVENT_STREAM}; charset=utf-8"})
        resp.enable_chunked_encoding()
        head, n = self._head(), self.call.num_tokens
        try:
            await resp.prepare(self.request)
            next_at = asyncio.get_running_loop().time()
            for i in range(n):
                if fault is not None and i == fault[1]:
                    return await self._fire(resp, fault)
                next_at = await token_slot(self.state.config.token_delay_s, i, next_at)
                if self._interrupted():
                    return self._gone(resp)
                token = next(self.source)
                self.produced.append(token)
                first = self._chunk(head, None, None) if i == 0 and self.call.kind == "chat" else b""
                await resp.write(first + self._chunk(head, token, self.call.finish_reason if i == n - 1 else None))
            if fault is not None and fault[1] >= n:
                return await self._fire(resp, fault)
            tail = _DONE
            if self.call.include_usage:
                tail = sse(head + dumps(self.call.model) + ',"choices":[],"usage":' + self._usage() + "}") + _DONE
            await resp.write(tail)
            await resp.write_eof()
        except ConnectionError:
            return self._gone(resp)
        self.state.stats.generations_completed += 1
        return resp

    async def _run_whole(self, fault: tuple[str, int, str] | None) -> web.StreamResponse:
        next_at = asyncio.get_running_loop().time()
        for i in range(self.call.num_tokens):
            if fault is not None and i == fault[1]:
                return await self._fire(None, fault)
            next_at = await token_slot(self.state.config.token_delay_s, i, next_at)
            if self._interrupted():
                return self._gone(None)
            self.produced.append(next(self.source))
        if fault is not None and fault[1] >= self.call.num_tokens:
            return await self._fire(None, fault)
        self.state.stats.generations_completed += 1
        return json_response(self._whole("".join(self.produced)))

    def _whole(self, text: str) -> dict[str, object]:
        p, c = self.call.prompt_tokens, len(self.produced)
        usage = {"prompt_tokens": p, "total_tokens": p + c, "completion_tokens": c}
        reason = self.call.finish_reason
        if self.call.kind == "chat":
            message = {"role": "assistant", "content": text, "tool_calls": []}
            choice = {"index": 0, "message": message, "logprobs": None, "finish_reason": reason, "stop_reason": None}
            prefix, kind = "chatcmpl", "chat.completion"
        else:
            choice = {"index": 0, "text": text, "logprobs": None, "finish_reason": reason, "stop_reason": None}
            prefix, kind = "cmpl", "text_completion"
        return {
            "id": f"{prefix}-{self.chunk_id}",
            "object": kind,
            "created": self.created,
            "model": self.call.model,
            "choices": [choice],
            "usage": usage,
        }

    def _gone(self, resp: web.StreamResponse | None) -> web.StreamResponse:
        self.state.stats.generations_interrupted += 1
        if self.request.transport is not None:
            self.request.transport.close()
        return resp if resp is not None and resp.prepared else web.Response(status=499)

    async def _fire(self, resp: web.StreamResponse | None, fault: tuple[str, int, str]) -> web.StreamResponse:
        action, _, message = fault
        if action == "error":
            self.state.stats.generations_interrupted += 1
            if resp is None:
                return error_response(500, message)
            with contextlib.suppress(ConnectionError):
                await resp.write(sse(dumps(error_body(500, message))) + _DONE)
                await resp.write_eof()
            return resp
        if action == "stall":
            while not self._interrupted():
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self.state.shutting_down.wait(), 0.05)
        return self._gone(resp)
