"""One generation: tokens on a fixed schedule, streamed as NDJSON lines or answered as one object, with
the final summary line, the token faults, and a stop at the next token when the client goes away."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, Literal

from aiohttp import web

from shared.fakes.ollama.goformat import dumps, now
from shared.fakes.ollama.responses import NDJSON, closing, error_response, json_response
from shared.fakes.ollama.state import FakeOllamaState
from shared.fakes.ollama.text import fake_token_ids, prompt_key
from shared.fakes.pacing import token_slot

__all__ = ["Generation"]


@dataclass
class Generation:
    request: web.Request
    state: FakeOllamaState
    kind: Literal["generate", "chat"]
    model_field: str
    prompt: str
    num_tokens: int
    source: Iterator[str]
    done_reason: str
    stream: bool
    start: int
    loaded: int
    prompt_count: int
    context: list[int] | None
    first_token: int = 0
    produced: list[str] = field(default_factory=list)

    def _final(self, text: str) -> dict[str, Any]:
        end = time.perf_counter_ns()
        first = self.first_token or end
        metrics = {
            "total_duration": max(end - self.start, 1),
            "load_duration": max(self.loaded - self.start, 1),
            "prompt_eval_count": self.prompt_count,
            "prompt_eval_duration": max(first - self.loaded, 1),
            "eval_count": len(self.produced),
            "eval_duration": max(end - first, 1),
        }
        if self.kind == "generate":
            out: dict[str, Any] = {
                "model": self.model_field,
                "created_at": now(),
                "response": text,
                "done": True,
                "done_reason": self.done_reason,
            }
            if self.context is not None:
                out["context"] = self.context + fake_token_ids("".join(self.produced))
            return out | metrics
        return {
            "model": self.model_field,
            "created_at": now(),
            "message": {"role": "assistant", "content": text},
            "done_reason": self.done_reason,
            "done": True,
        } | metrics

    async def run(self) -> web.StreamResponse:
        with self.state.generating(self.request.path, prompt_key(self.prompt)) as fault:
            if self.stream:
                return await self._run_stream(fault)
            return await self._run_whole(fault)

    def _interrupted(self) -> bool:
        return closing(self.request) or self.state.shutting_down.is_set()

    async def _run_stream(self, fault: tuple[str, int, str] | None) -> web.StreamResponse:
        # Headers go out with the first line, as with gin: a fault or a gone client before the
        # first token still gets (or fails to get) a plain HTTP response.
        resp = web.StreamResponse(headers={"Content-Type": NDJSON})
        resp.enable_chunked_encoding()
        head = '{"model":' + dumps(self.model_field) + ',"created_at":"'
        if self.kind == "generate":
            mid, tail = '","response":', ',"done":false}\n'
        else:
            mid, tail = '","message":{"role":"assistant","content":', '},"done":false}\n'
        next_at = asyncio.get_running_loop().time()
        self.first_token = time.perf_counter_ns()
        try:
            for i in range(self.num_tokens):
                if fault is not None and i == fault[1]:
                    return await self._fire(resp, fault)
                next_at = await token_slot(self.state.config.token_delay_s, i, next_at)
                if self._interrupted():
                    return self._gone(resp)
                if not resp.prepared:
                    await resp.prepare(self.request)
                token = next(self.source)
                await resp.write((head + now() + mid + dumps(token) + tail).encode())
                self.produced.append(token)
            if fault is not None and fault[1] >= self.num_tokens:
                return await self._fire(resp, fault)
            if not resp.prepared:
                await resp.prepare(self.request)
            await resp.write((dumps(self._final("")) + "\n").encode())
        except ConnectionError:
            return self._gone(resp)
        self.state.stats.generations_completed += 1
        return resp

    async def _run_whole(self, fault: tuple[str, int, str] | None) -> web.StreamResponse:
        next_at = asyncio.get_running_loop().time()
        self.first_token = time.perf_counter_ns()
        for i in range(self.num_tokens):
            if fault is not None and i == fault[1]:
                return await self._fire(None, fault)
            next_at = await token_slot(self.state.config.token_delay_s, i, next_at)
            if self._interrupted():
                return self._gone(None)
            self.produced.append(next(self.source))
        if fault is not None and fault[1] >= self.num_tokens:
            return await self._fire(None, fault)
        self.state.stats.generations_completed += 1
        return json_response(self._final("".join(self.produced)))

    def _gone(self, resp: web.StreamResponse | None) -> web.StreamResponse:
        self.state.stats.generations_interrupted += 1
        if self.request.transport is not None:
            self.request.transport.close()
        return resp if resp is not None and resp.prepared else web.Response(status=499)

    async def _fire(self, resp: web.StreamResponse | None, fault: tuple[str, int, str]) -> web.StreamResponse:
        action, _, message = fault
        if action == "error":
            self.state.stats.generations_interrupted += 1
            if resp is None or not resp.prepared:
                return error_response(500, message)
            with contextlib.suppress(ConnectionError):
                await resp.write((dumps({"error": message}) + "\n").encode())
            return resp
        if action == "stall":
            while not self._interrupted():
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self.state.shutting_down.wait(), 0.05)
        return self._gone(resp)
