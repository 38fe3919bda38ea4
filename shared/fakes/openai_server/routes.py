"""The stand-in's routes: ``/health``, ``/version``, ``GET /v1/models``, the two completion endpoints and
``POST /v1/embeddings``."""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any, Final

from aiohttp import web

from shared.fakes.ollama.embed import EMBEDDING_DIMENSIONS, fake_embedding
from shared.fakes.ollama.state import STATE
from shared.fakes.ollama.text import canonical_model_name, fake_token_count, token_stream
from shared.fakes.openai_server.generation import Generation
from shared.fakes.openai_server.requests import MAX_MODEL_LEN, BadRequest, Kind, decode_call
from shared.fakes.openai_server.responses import error_response, json_response, loading_response

__all__ = ["LOADED", "chat_completions", "completions", "embeddings", "health", "models", "version"]

LOADED: Final = web.AppKey("fake_openai_loaded", asyncio.Event)
"""Set once the served models are loaded (``load_delay_s`` after the server starts)."""

STARTED: Final = int(time.time())


async def health(request: web.Request) -> web.Response:
    """llama.cpp's: 503 ``Loading model`` while it loads, then 200 ``{"status": "ok"}``."""
    if not request.app[LOADED].is_set():
        return loading_response()
    return json_response({"status": "ok"})


async def version(request: web.Request) -> web.Response:
    return json_response({"version": "0.9.2"})


async def models(request: web.Request) -> web.Response:
    """vLLM's model list (llama.cpp answers it while loading too)."""
    data = [
        {
            "id": name,
            "object": "model",
            "created": STARTED,
            "owned_by": "vllm",
            "root": name,
            "parent": None,
            "max_model_len": MAX_MODEL_LEN,
        }
        for name in request.app[STATE].config.models
    ]
    return json_response({"object": "list", "data": data})


async def _inference(request: web.Request, kind: Kind) -> web.StreamResponse:
    state = request.app[STATE]
    if not request.app[LOADED].is_set():
        return loading_response()
    try:
        call = decode_call(kind, await request.read(), state.config.models, state.config.default_num_tokens)
    except BadRequest as exc:
        return error_response(exc.status, exc.message, exc.param)
    injected = state.take_error_fault()
    if injected is not None:
        return error_response(*injected)
    state.inflight += 1
    try:
        return await Generation(request, state, call, token_stream(call.model, call.prompt)).run()
    finally:
        state.inflight -= 1


async def chat_completions(request: web.Request) -> web.StreamResponse:
    return await _inference(request, "chat")


async def completions(request: web.Request) -> web.StreamResponse:
    return await _inference(request, "completion")


def _inputs(body: Any) -> list[str]:
    if not isinstance(body, dict) or "input" not in body:
        raise BadRequest(400, "1 validation error(s): body.input: Field required", "input")
    raw = body["input"]
    inputs = [raw] if isinstance(raw, str) else raw
    if not isinstance(inputs, list) or not all(isinstance(i, str) for i in inputs):
        raise BadRequest(400, "input must be a string or a list of strings", "input")
    return inputs


async def embeddings(request: web.Request) -> web.Response:
    """``{"object": "list", "data": [{"object": "embedding", "index", "embedding"}], "model", "usage"}``;
    the vectors are the Ollama stand-in's (:func:`~shared.fakes.ollama.embed.fake_embedding`)."""
    state = request.app[STATE]
    if not request.app[LOADED].is_set():
        return loading_response()
    try:
        body = json.loads(await request.read() or b"null")
        inputs = _inputs(body)
        model = body.get("model") or state.config.models[0]
        if model not in state.config.models:
            raise BadRequest(404, f"The model `{model}` does not exist.", "model")
    except ValueError as exc:
        return error_response(400, f"JSON decode error: {exc}")
    except BadRequest as exc:
        return error_response(exc.status, exc.message, exc.param)
    dims = body.get("dimensions") or EMBEDDING_DIMENSIONS
    data = [
        {"object": "embedding", "index": i, "embedding": fake_embedding(canonical_model_name(model), text, dims)}
        for i, text in enumerate(inputs)
    ]
    tokens = sum(fake_token_count(t) for t in inputs)
    return json_response(
        {
            "id": f"embd-{int(time.time() * 1000)}",
            "object": "list",
            "created": int(time.time()),
            "model": model,
            "data": data,
            "usage": {"prompt_tokens": tokens, "total_tokens": tokens, "completion_tokens": 0},
        }
    )
