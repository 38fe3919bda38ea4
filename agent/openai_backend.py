"""The ``openai`` backend: a model server that speaks OpenAI's API (vLLM, llama.cpp's ``llama-server``,
SGLang, TGI) instead of Ollama's.

- A job with ``messages`` streams from ``POST /v1/chat/completions``, one with ``prompt`` from
  ``POST /v1/completions`` (which applies no chat template, unlike Ollama's ``/api/generate``), both with
  ``stream_options.include_usage``, through :mod:`agent.model_stream` and :mod:`agent.openai_stream`; a
  job with ``input`` is ``POST /v1/embeddings``.
- The job's Ollama ``options`` become OpenAI fields (:data:`OPTION_FIELDS`); any other option, or a
  message with ``images``, fails the job with ``unsupported_option`` naming it, before any request.
- Ready when ``GET /health`` answers 200 (llama.cpp answers 503 while it loads; a server without
  ``/health`` is asked ``GET /v1/models`` alone); its models are ``GET /v1/models``'s ids. It serves the
  models it was started with: nothing can be pulled.
- Refusals become the job's error codes as on the Ollama path: 404 ``model_not_found``, 429/503
  ``model_server_busy``, others ``model_server_error``; no server, or one gone mid-answer,
  ``model_server_unreachable``.
"""

from __future__ import annotations

import json
from typing import Any

import aiohttp

from agent.model_stream import ModelStreams, Sink
from agent.openai_stream import SseDecoder, error_message
from shared.errors import ModelServerUnreachable, OllamaError, StreamFailed
from shared.jobs.events import AgentJob
from shared.models import ChatMessage, JobResult

__all__ = ["OPTION_FIELDS", "OpenAIBackend", "openai_fields"]

OPTION_FIELDS = {
    "num_predict": "max_tokens",
    "temperature": "temperature",
    "top_p": "top_p",
    "stop": "stop",
    "seed": "seed",
    "presence_penalty": "presence_penalty",
    "frequency_penalty": "frequency_penalty",
}
"""Ollama option → OpenAI request field. ``num_predict`` ≤ 0 (Ollama: no limit) sends no ``max_tokens``."""

SHORT = aiohttp.ClientTimeout(total=5)


def _unsupported(what: str, param: str) -> OllamaError:
    return OllamaError(f"{what} is not supported by the openai backend", code="unsupported_option", param=param)


def openai_fields(options: dict[str, Any] | None) -> dict[str, Any]:
    """The request fields for a job's Ollama ``options``; :class:`OllamaError` ``unsupported_option``
    naming the first option the openai backend cannot send."""
    fields: dict[str, Any] = {}
    for name, value in (options or {}).items():
        field = OPTION_FIELDS.get(name)
        if field is None:
            supported = ", ".join(OPTION_FIELDS)
            raise _unsupported(f"option {name!r} (supported: {supported})", f"options.{name}")
        if name == "num_predict" and isinstance(value, int) and value <= 0:
            continue
        fields[field] = value
    return fields


def _messages(messages: list[ChatMessage]) -> list[dict[str, str]]:
    out = []
    for i, message in enumerate(messages):
        if message.images:
            raise _unsupported(f"images in messages[{i}]", f"messages[{i}].images")
        out.append({"role": message.role, "content": message.content})
    return out


def _error_of(status: int, raw: bytes, path: str) -> OllamaError:
    try:
        body = json.loads(raw)
    except ValueError:
        body = raw.decode(errors="replace")[:500]
    message = error_message(body)
    if status == 404 and isinstance(body, dict) and "detail" in body:  # the web framework's: no such route
        return OllamaError(f"404: the model server has no {path}", code="model_server_error")
    if status == 404:
        return OllamaError(message, code="model_not_found")
    if status in (429, 503):
        return OllamaError(message, code="model_server_busy")
    return OllamaError(f"{status}: {message}", code="model_server_error")


class OpenAIBackend:
    """An OpenAI-compatible model server at ``base_url`` (``http://127.0.0.1:8001``; a trailing ``/v1`` is
    accepted). ``api_key``, when set, goes as ``Authorization: Bearer`` (a server started with ``--api-key``)."""

    def __init__(self, base_url: str, *, api_key: str = "") -> None:
        base = base_url.rstrip("/")
        self._base = base.removesuffix("/v1")
        self._headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        auth = f"Authorization: Bearer {api_key}\r\n".encode() if api_key else b""
        self._streams = ModelStreams(self._base, accept=b"text/event-stream", headers=auth)
        self._session: aiohttp.ClientSession | None = None

    def _http(self) -> aiohttp.ClientSession:
        if self._session is None:  # created inside the running loop, on first use
            self._session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(limit=64, keepalive_timeout=60),
                timeout=aiohttp.ClientTimeout(total=None, sock_connect=5),
                headers=self._headers,
            )
        return self._session

    async def aclose(self) -> None:
        self._streams.close()
        if self._session is not None:
            await self._session.close()

    async def available_models(self) -> list[str]:
        """The served models, once the server is ready; ``aiohttp.ClientError`` while it is not (loading: 503)."""
        async with self._http().get(self._base + "/health", timeout=SHORT) as response:
            if response.status != 404:  # 404: a server without /health; its /v1/models says it is up
                response.raise_for_status()
        async with self._http().get(self._base + "/v1/models", timeout=SHORT) as response:
            response.raise_for_status()
            return [str(m["id"]) for m in (await response.json()).get("data", [])]

    async def pull(self, model: str) -> None:
        served = ", ".join(await self.available_models()) or "none"
        raise OllamaError(
            f"the model server does not serve {model!r} (it serves: {served}); an OpenAI-compatible server "
            "serves the models it was started with",
            code="model_not_served",
        )

    async def load(self, model: str) -> None:
        """Nothing to do: the server loaded its models before ``/health`` answered 200."""

    async def generate(self, job: AgentJob, sink: Sink, progress: object = None) -> JobResult:
        """Run the job, handing each read's texts to ``sink``; return the counters (the server's usage).
        (``progress`` is for pulls, which this backend never makes.)"""
        if job.input is not None:
            return await self.embed(job, sink)
        chat = job.messages is not None
        body: dict[str, Any] = {"model": job.model, "stream": True, "stream_options": {"include_usage": True}}
        if job.messages is not None:
            body["messages"] = _messages(job.messages)
        else:
            body["prompt"] = job.prompt
        body.update(openai_fields(job.options))
        path = "/v1/chat/completions" if chat else "/v1/completions"
        try:
            return await self._streams.post(path, json.dumps(body).encode(), sink, SseDecoder(chat))
        except StreamFailed as exc:
            raise _error_of(exc.status, exc.body, path) from None

    async def embed(self, job: AgentJob, sink: Sink) -> JobResult:
        """``POST /v1/embeddings``; the output is one text, ``{"embeddings": [[float]]}`` in input order."""
        body = {"model": job.model, "input": job.input}
        try:
            async with self._http().post(self._base + "/v1/embeddings", json=body) as response:
                raw = await response.read()
        except aiohttp.ClientError as exc:
            raise ModelServerUnreachable(f"the model server failed: {type(exc).__name__}: {exc}") from None
        if response.status != 200:
            raise _error_of(response.status, raw, "/v1/embeddings")
        answer = json.loads(raw)
        vectors = [d["embedding"] for d in sorted(answer.get("data", []), key=lambda d: d.get("index", 0))]
        pending = sink([json.dumps({"embeddings": vectors}, separators=(",", ":"))])
        if pending is not None:
            await pending
        return JobResult(
            done_reason="stop", prompt_eval_count=(answer.get("usage") or {}).get("prompt_tokens"), eval_count=0
        )
