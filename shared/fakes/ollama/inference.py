"""``POST /api/generate`` and ``POST /api/chat``: the request checked in Ollama's order (body, model,
load or unload only, options, injected errors, the queue limit), the model held loaded, then one
:class:`~shared.fakes.ollama.generation.Generation`."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

from aiohttp import web

from shared.fakes.ollama.binding import CHAT_SCHEMA, GENERATE_SCHEMA, BadRequest, bind_json
from shared.fakes.ollama.catalogue import Model, model_not_found_error
from shared.fakes.ollama.config import MAX_QUEUE_ERROR
from shared.fakes.ollama.generation import Generation
from shared.fakes.ollama.goformat import go_quote, now, parse_keep_alive
from shared.fakes.ollama.responses import error_response, json_response
from shared.fakes.ollama.state import STATE, FakeOllamaState
from shared.fakes.ollama.text import fake_token_count, fake_token_ids, token_stream

__all__ = ["chat", "generate", "inference"]


def _num_predict(options: dict[str, Any] | None) -> int | None:
    if not options or options.get("num_predict") is None:
        return None
    value = options["num_predict"]
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise BadRequest(500, 'option "num_predict" must be of type integer')
    n = int(value)
    return n if n > 0 else None


def _check_think(body: dict[str, Any], model_field: str) -> None:
    think = body.get("think")
    if think is None or think is False:
        return
    if isinstance(think, str):
        if think in ("", "false"):
            return
        raise BadRequest(400, f"think value {go_quote(think)} is not supported for this model")
    raise BadRequest(400, f"{go_quote(model_field)} does not support thinking")


def _chat_prompt(messages: Sequence[Any]) -> str:
    for message in reversed(messages):
        if isinstance(message, dict) and message.get("role") == "user":
            content = message.get("content")
            return content if isinstance(content, str) else ""
    return ""


def _chat_prompt_count(messages: Sequence[Any]) -> int:
    total = 0
    for message in messages:
        if isinstance(message, dict):
            content = message.get("content")
            total += 4 + (fake_token_count(content) if isinstance(content, str) else 0)
    return total + 2


@dataclass(frozen=True)
class _Call:
    """A generate or chat request, decoded and checked as far as the model lookup."""

    kind: Literal["generate", "chat"]
    body: dict[str, Any]
    model_field: str
    model: Model
    keep_alive_ns: int
    prompt: str
    messages: list[Any]
    load_only: bool
    explicit_unload: bool


async def _decode(request: web.Request, kind: Literal["generate", "chat"], state: FakeOllamaState) -> _Call:
    """The request's body, keep_alive and model, or the :class:`BadRequest` Ollama answers."""
    try:
        if kind == "generate":
            body = await bind_json(request, "GenerateRequest", GENERATE_SCHEMA)
        else:
            body = await bind_json(request, "ChatRequest", CHAT_SCHEMA)
        keep_alive = (
            parse_keep_alive(body["keep_alive"])
            if body.get("keep_alive") is not None
            else state.default_keep_alive_ns()
        )
    except ValueError as exc:
        raise BadRequest(400, str(exc)) from None

    model_field: str = body.get("model") or ""
    if not model_field.strip():
        raise BadRequest(400, "model is required")
    model = state.lookup(model_field)
    if model is None:
        raise BadRequest(404, model_not_found_error(model_field))

    messages: list[Any] = []
    if kind == "generate":
        prompt: str = body.get("prompt") or ""
        load_only = prompt == ""
    else:
        messages = body.get("messages") or []
        prompt = _chat_prompt(messages)
        load_only = not messages
    explicit_unload = load_only and body.get("keep_alive") is not None and keep_alive == 0
    return _Call(kind, body, model_field, model, keep_alive, prompt, messages, load_only, explicit_unload)


def _refusal(state: FakeOllamaState) -> web.Response | None:
    """An armed error fault, or Ollama's 503 when ``max_queue`` requests are already in flight."""
    injected = state.take_error_fault()
    if injected is not None:
        return error_response(*injected)
    if state.inflight >= state.config.max_queue:
        state.stats.rejected_queue_full += 1
        return error_response(503, MAX_QUEUE_ERROR)
    return None


async def inference(request: web.Request, kind: Literal["generate", "chat"]) -> web.StreamResponse:
    start = time.perf_counter_ns()
    state = request.app[STATE]
    try:
        call = await _decode(request, kind, state)
        if call.explicit_unload:
            state.unload(call.model)
            return json_response(_load_reply(kind, call.model_field, "unload"))
        _check_think(call.body, call.model_field)
        num_predict = _num_predict(call.body.get("options"))
    except BadRequest as exc:
        return error_response(exc.status, exc.message)

    refused = _refusal(state)
    if refused is not None:
        return refused

    state.inflight += 1
    try:
        return await _serve(request, state, call, num_predict, start)
    finally:
        state.inflight -= 1


async def _serve(
    request: web.Request, state: FakeOllamaState, call: _Call, num_predict: int | None, start: int
) -> web.StreamResponse:
    """Hold the model loaded (and a parallel slot, if limited) while the request is answered."""
    await state.acquire(call.model, call.keep_alive_ns)  # releases the model itself if the wait fails
    slots: asyncio.Semaphore | None = None
    try:
        model_slots = state.slots_for(call.model)
        if model_slots is not None:
            await model_slots.acquire()
            slots = model_slots
        loaded = time.perf_counter_ns()
        if call.load_only:
            return json_response(_load_reply(call.kind, call.model_field, "load"))
        job = Generation(
            request=request,
            state=state,
            kind=call.kind,
            model_field=call.model_field,
            prompt=call.prompt,
            num_tokens=num_predict if num_predict is not None else state.config.default_num_tokens,
            source=token_stream(call.model.name, call.prompt),
            done_reason="length" if num_predict is not None else "stop",
            stream=call.body.get("stream") is not False,
            start=start,
            loaded=loaded,
            prompt_count=max(_prompt_count(call), 1),
            context=_context(call),
        )
        return await job.run()
    finally:
        if slots is not None:
            slots.release()
        state.release(call.model)


def _prompt_count(call: _Call) -> int:
    if call.kind == "chat":
        return _chat_prompt_count(call.messages)
    body = call.body
    return (
        fake_token_count(body.get("system") or "")
        + fake_token_count(call.prompt)
        + len(body.get("context") or [])
        + (0 if body.get("raw") else 10)
    )


def _context(call: _Call) -> list[int] | None:
    """What generate returns as ``context`` (not for chat, nor in raw mode)."""
    if call.kind == "chat" or call.body.get("raw"):
        return None
    return [*(int(i) for i in call.body.get("context") or []), *fake_token_ids(call.prompt)]


def _load_reply(kind: str, model_field: str, reason: str) -> dict[str, Any]:
    if kind == "generate":
        return {
            "model": model_field,
            "created_at": now(),
            "response": "",
            "done": True,
            "done_reason": reason,
        }
    return {
        "model": model_field,
        "created_at": now(),
        "message": {"role": "assistant", "content": ""},
        "done_reason": reason,
        "done": True,
    }


async def generate(request: web.Request) -> web.StreamResponse:
    return await inference(request, "generate")


async def chat(request: web.Request) -> web.StreamResponse:
    return await inference(request, "chat")
