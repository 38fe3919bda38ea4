"""Streaming client for Ollama's native API (NDJSON), over one pooled keep-alive connection pool.

aiohttp rather than httpx on this hot path: measured in bench/agent_stream.py, httpx's per-chunk
machinery cost the agent several times PyWorker's CPU per token.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import aiohttp

from shared.events import AgentJob
from shared.models import JobResult

__all__ = ["OllamaClient", "OllamaError", "Piece"]


class OllamaError(Exception):
    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


@dataclass(slots=True)
class Piece:
    text: str
    result: JobResult | None = None  # set on the final line


def _error_of(status: int, raw: bytes) -> OllamaError:
    try:
        message = str(json.loads(raw).get("error", raw.decode(errors="replace")))
    except ValueError:
        message = raw.decode(errors="replace")[:500]
    if status == 404:
        return OllamaError("model_not_found", message)
    if status == 503:
        return OllamaError("model_server_busy", message)
    return OllamaError("model_server_error", f"{status}: {message}")


SHORT = aiohttp.ClientTimeout(total=5)


class OllamaClient:
    def __init__(self, base_url: str, *, keep_alive: str | int = -1) -> None:
        self._base = base_url.rstrip("/")
        self._keep_alive = keep_alive
        self._session: aiohttp.ClientSession | None = None

    def _http(self) -> aiohttp.ClientSession:
        if self._session is None:  # created inside the running loop, on first use
            self._session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(limit=512, keepalive_timeout=60),
                timeout=aiohttp.ClientTimeout(total=None, sock_connect=5),
            )
        return self._session

    async def aclose(self) -> None:
        if self._session is not None:
            await self._session.close()

    async def tags(self) -> list[str]:
        async with self._http().get(self._base + "/api/tags", timeout=SHORT) as response:
            response.raise_for_status()
            return [m["name"] for m in (await response.json()).get("models", [])]

    async def _post_json(self, path: str, body: dict[str, Any]) -> None:
        async with self._http().post(self._base + path, json=body) as response:
            raw = await response.read()
            if response.status != 200:
                raise _error_of(response.status, raw)

    async def pull(self, model: str) -> None:
        await self._post_json("/api/pull", {"model": model, "stream": False})

    async def load(self, model: str) -> None:
        """An empty prompt loads the model and keeps it loaded (``keep_alive``)."""
        await self._post_json("/api/generate", {"model": model, "prompt": "", "keep_alive": self._keep_alive,
                                                "stream": False})

    async def stream(self, job: AgentJob) -> AsyncIterator[Piece]:
        """Yield output pieces; the last one carries the model server's final counters."""
        chat = job.messages is not None
        body: dict[str, Any] = {"model": job.model, "stream": True, "keep_alive": self._keep_alive}
        if chat:
            body["messages"] = [m.model_dump(exclude_none=True) for m in job.messages or []]
        else:
            body["prompt"] = job.prompt
        if job.options:
            body["options"] = job.options
        url = self._base + ("/api/chat" if chat else "/api/generate")
        async with self._http().post(url, json=body) as response:
            if response.status != 200:
                raise _error_of(response.status, await response.read())
            tail = b""
            async for data in response.content.iter_any():
                lines = (tail + data).split(b"\n")
                tail = lines.pop()
                for line in lines:
                    if not line:
                        continue
                    piece = _piece(json.loads(line), chat)
                    if piece is not None:
                        yield piece
                        if piece.result is not None:
                            return
            if tail.strip():
                piece = _piece(json.loads(tail), chat)
                if piece is not None and piece.result is not None:
                    yield piece
                    return
        raise OllamaError("model_server_error", "the stream ended without a final line")


def _piece(data: dict[str, Any], chat: bool) -> Piece | None:
    if "error" in data:
        raise OllamaError("model_server_error", str(data["error"]))
    text = data["message"].get("content", "") if chat else data.get("response", "")
    if data.get("done"):
        return Piece(text, JobResult(
            done_reason=data.get("done_reason"),
            prompt_eval_count=data.get("prompt_eval_count"),
            eval_count=data.get("eval_count"),
            total_duration_ns=data.get("total_duration"),
            load_duration_ns=data.get("load_duration"),
        ))
    return Piece(text) if text else None
