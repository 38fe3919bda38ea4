"""Client for Ollama's native API: model listing, pull and load (aiohttp), and the streaming
generate/chat calls, which go through :mod:`agent.ollama_stream` (the hot path, its own pool).

Every failure of the model server leaves here as an :class:`~shared.errors.OllamaError` whose
``code`` becomes the job's error code.
"""

from __future__ import annotations

import json
from typing import Any

import aiohttp

from agent.ollama_stream import OllamaStreams, Sink
from shared.errors import OllamaError, StreamFailed
from shared.jobs.events import AgentJob
from shared.models import JobResult

__all__ = ["OllamaClient"]


def _error_of(status: int, raw: bytes) -> OllamaError:
    try:
        message = str(json.loads(raw).get("error", raw.decode(errors="replace")))
    except ValueError:
        message = raw.decode(errors="replace")[:500]
    if status == 404:
        return OllamaError(message, code="model_not_found")
    if status == 503:
        return OllamaError(message, code="model_server_busy")
    return OllamaError(f"{status}: {message}", code="model_server_error")


SHORT = aiohttp.ClientTimeout(total=5)


class OllamaClient:
    def __init__(self, base_url: str, *, keep_alive: str | int = -1) -> None:
        self._base = base_url.rstrip("/")
        self._keep_alive = keep_alive
        self._session: aiohttp.ClientSession | None = None
        self._streams = OllamaStreams(self._base)

    def _http(self) -> aiohttp.ClientSession:
        if self._session is None:  # created inside the running loop, on first use
            self._session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(limit=512, keepalive_timeout=60),
                timeout=aiohttp.ClientTimeout(total=None, sock_connect=5),
            )
        return self._session

    async def aclose(self) -> None:
        self._streams.close()
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
        await self._post_json(
            "/api/generate", {"model": model, "prompt": "", "keep_alive": self._keep_alive, "stream": False}
        )

    async def generate(self, job: AgentJob, sink: Sink) -> JobResult:
        """Run the job on the model server, handing each read's output texts to ``sink`` as they come
        (see :mod:`agent.ollama_stream`); return the model server's final counters."""
        chat = job.messages is not None
        body: dict[str, Any] = {"model": job.model, "stream": True, "keep_alive": self._keep_alive}
        if chat:
            body["messages"] = [m.model_dump(exclude_none=True) for m in job.messages or []]
        else:
            body["prompt"] = job.prompt
        if job.options:
            body["options"] = job.options
        # A broken stream or an unreachable server is an OllamaError already, with its code; a refusal
        # carries the model server's own status and body, which say which failure it is.
        try:
            return await self._streams.stream("/api/chat" if chat else "/api/generate", body, sink, chat=chat)
        except StreamFailed as exc:
            raise _error_of(exc.status, exc.body) from None
