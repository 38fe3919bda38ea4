"""Streaming client for Ollama's native API (NDJSON), over one pooled keep-alive connection pool."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import httpx

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


class OllamaClient:
    def __init__(self, base_url: str, *, keep_alive: str | int = -1) -> None:
        self._http = httpx.AsyncClient(
            base_url=base_url.rstrip("/"),
            timeout=httpx.Timeout(None, connect=5.0),
            limits=httpx.Limits(max_connections=512, max_keepalive_connections=64),
        )
        self._keep_alive = keep_alive

    async def aclose(self) -> None:
        await self._http.aclose()

    async def tags(self) -> list[str]:
        response = await self._http.get("/api/tags", timeout=5.0)
        response.raise_for_status()
        return [m["name"] for m in response.json().get("models", [])]

    async def pull(self, model: str) -> None:
        response = await self._http.post("/api/pull", json={"model": model, "stream": False})
        if response.status_code != 200:
            raise _error_of(response.status_code, response.content)

    async def load(self, model: str) -> None:
        """An empty prompt loads the model and keeps it loaded (``keep_alive``)."""
        response = await self._http.post(
            "/api/generate", json={"model": model, "prompt": "", "keep_alive": self._keep_alive, "stream": False}
        )
        if response.status_code != 200:
            raise _error_of(response.status_code, response.content)

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
        async with self._http.stream("POST", "/api/chat" if chat else "/api/generate", json=body) as response:
            if response.status_code != 200:
                raise _error_of(response.status_code, await response.aread())
            async for line in response.aiter_lines():
                if not line:
                    continue
                data = json.loads(line)
                if "error" in data:
                    raise OllamaError("model_server_error", str(data["error"]))
                text = data["message"].get("content", "") if chat else data.get("response", "")
                if data.get("done"):
                    yield Piece(text, JobResult(
                        done_reason=data.get("done_reason"),
                        prompt_eval_count=data.get("prompt_eval_count"),
                        eval_count=data.get("eval_count"),
                        total_duration_ns=data.get("total_duration"),
                        load_duration_ns=data.get("load_duration"),
                    ))
                    return
                if text:
                    yield Piece(text)
        raise OllamaError("model_server_error", "the stream ended without a final line")
