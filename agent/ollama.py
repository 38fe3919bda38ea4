"""Client for Ollama's native API: model listing, pull and load (aiohttp), and the streaming
generate/chat calls, which go through :mod:`agent.ollama_stream` (the hot path, its own pool).

Every failure of the model server leaves here as an :class:`~shared.errors.OllamaError` whose
``code`` becomes the job's error code.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
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
Progress = Callable[[str], None]  # told "pulling_model 43%" as a pull goes


class OllamaClient:
    def __init__(self, base_url: str, *, keep_alive: str | int = -1, pull_on_demand: bool = False) -> None:
        self._base = base_url.rstrip("/")
        self._keep_alive = keep_alive
        self._session: aiohttp.ClientSession | None = None
        self._streams = OllamaStreams(self._base)
        self._pull_on_demand = pull_on_demand
        self._pulls: dict[str, asyncio.Future[None]] = {}  # model → its one pull in flight
        self._watchers: dict[str, list[Progress]] = {}
        self._present: set[str] = set()  # models the server has (pull on demand asks once per model)

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

    async def available_models(self) -> list[str]:
        """The pulled models (``GET /api/tags``): the backend interface's readiness probe."""
        return await self.tags()

    async def _post_json(self, path: str, body: dict[str, Any]) -> None:
        async with self._http().post(self._base + path, json=body) as response:
            raw = await response.read()
            if response.status != 200:
                raise _error_of(response.status, raw)

    async def pull(self, model: str) -> None:
        await self._post_json("/api/pull", {"model": model, "stream": False})

    async def ensure_model(self, model: str, progress: Progress) -> None:
        """Pull ``model`` if the server lacks it (``pull_on_demand``); jobs needing the same model share
        one pull, each told its progress. A failed pull fails them with the server's reason."""
        if not self._pull_on_demand or model in self._present:
            return
        pulling = self._pulls.get(model)
        if pulling is None:
            present = await self.tags()
            if model in present or f"{model}:latest" in present:
                self._present.add(model)
                return
            pulling = self._pulls[model] = asyncio.ensure_future(self._pull_streamed(model))
            pulling.add_done_callback(lambda _: self._pulls.pop(model, None))
        self._watchers.setdefault(model, []).append(progress)
        try:
            await asyncio.shield(pulling)
        finally:
            self._watchers[model].remove(progress)
        self._present.add(model)

    async def _pull_streamed(self, model: str) -> None:
        """``POST /api/pull`` streamed: NDJSON ``{"status", "total", "completed"}`` lines, ``{"error"}`` on failure."""
        shown = -1
        async with self._http().post(self._base + "/api/pull", json={"model": model, "stream": True}) as response:
            if response.status != 200:
                raise _error_of(response.status, await response.read())
            async for raw in response.content:
                line = json.loads(raw) if raw.strip() else {}
                if "error" in line:
                    raise OllamaError(f"pulling {model} failed: {line['error']}", code="pull_failed")
                if line.get("total") and line.get("completed") is not None:
                    percent = int(100 * line["completed"] / line["total"])
                    if percent >= shown + 5:
                        shown = percent
                        for tell in list(self._watchers.get(model, [])):
                            tell(f"pulling_model {percent}%")
                if line.get("status") == "success":
                    return
        raise OllamaError(f"pulling {model} ended before it succeeded", code="pull_failed")

    async def load(self, model: str) -> None:
        """An empty prompt loads the model and keeps it loaded (``keep_alive``)."""
        await self._post_json(
            "/api/generate", {"model": model, "prompt": "", "keep_alive": self._keep_alive, "stream": False}
        )

    async def embed(self, job: AgentJob, sink: Sink) -> JobResult:
        """An embedding job: ``POST /api/embed``; its output is one text, ``{"embeddings": [[float]]}``."""
        body = {"model": job.model, "input": job.input, "keep_alive": self._keep_alive}
        async with self._http().post(self._base + "/api/embed", json=body) as response:
            raw = await response.read()
            if response.status != 200:
                raise _error_of(response.status, raw)
        answer = json.loads(raw)
        pending = sink([json.dumps({"embeddings": answer.get("embeddings", [])}, separators=(",", ":"))])
        if pending is not None:
            await pending
        return JobResult(
            done_reason="stop",
            prompt_eval_count=answer.get("prompt_eval_count"),
            eval_count=0,
            total_duration_ns=answer.get("total_duration"),
            load_duration_ns=answer.get("load_duration"),
        )

    async def generate(self, job: AgentJob, sink: Sink, progress: Progress | None = None) -> JobResult:
        """Run the job on the model server, handing each read's output texts to ``sink`` as they come
        (see :mod:`agent.ollama_stream`); return the model server's final counters. With pull on demand,
        a missing model is pulled first, ``progress`` told how far."""
        if progress is not None:
            await self.ensure_model(job.model, progress)
        if job.input is not None:
            return await self.embed(job, sink)
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
