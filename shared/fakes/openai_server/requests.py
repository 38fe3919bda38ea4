"""``POST /v1/chat/completions`` and ``POST /v1/completions`` bodies, decoded and checked as vLLM does:
unknown fields ignored, a field of the wrong type or out of range 400, an unknown model 404, a request
beyond the context length 400."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Final, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from shared.fakes.ollama.text import fake_token_count

__all__ = ["MAX_MODEL_LEN", "BadRequest", "Call", "decode_call", "prompt_of"]

MAX_MODEL_LEN: Final = 8192
"""The served models' context length (``max_model_len`` in ``/v1/models``)."""

Kind = Literal["chat", "completion"]


class BadRequest(Exception):
    def __init__(self, status: int, message: str, param: str | None = None) -> None:
        super().__init__(message)
        self.status, self.message, self.param = status, message, param


class _StreamOptions(BaseModel):
    model_config = ConfigDict(extra="ignore")

    include_usage: bool | None = None
    continuous_usage_stats: bool | None = None


class _Sampling(BaseModel):
    model_config = ConfigDict(extra="ignore", protected_namespaces=())

    model: str | None = None
    max_tokens: int | None = Field(default=None, ge=1)
    temperature: float | None = Field(default=None, ge=0)
    top_p: float | None = Field(default=None, gt=0, le=1)
    seed: int | None = None
    stop: str | list[str] | None = None
    presence_penalty: float | None = Field(default=None, ge=-2, le=2)
    frequency_penalty: float | None = Field(default=None, ge=-2, le=2)
    n: int = Field(default=1, ge=1)
    stream: bool = False
    stream_options: _StreamOptions | None = None


class _ChatBody(_Sampling):
    messages: list[dict[str, Any]]
    max_completion_tokens: int | None = Field(default=None, ge=1)


class _CompletionBody(_Sampling):
    prompt: str | list[str]


@dataclass(frozen=True)
class Call:
    """One decoded request: what to generate and how to answer."""

    kind: Kind
    model: str
    prompt: str  # what the text is a function of: the prompt, or the chat's last user message
    prompt_tokens: int
    num_tokens: int
    finish_reason: str  # "length" when max_tokens was given (exactly that many are made), else "stop"
    stream: bool
    include_usage: bool
    continuous_usage: bool


def _text(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):  # content parts: the text ones
        return "".join(str(p.get("text", "")) for p in content if isinstance(p, dict) and p.get("type") == "text")
    return ""


def prompt_of(messages: list[dict[str, Any]]) -> str:
    """The chat's last user message: what the stand-in's text is a function of (as the Ollama stand-in's)."""
    for message in reversed(messages):
        if message.get("role") == "user":
            return _text(message.get("content"))
    return ""


def _validated(kind: Kind, raw: bytes) -> _ChatBody | _CompletionBody:
    try:
        data = json.loads(raw or b"null")
    except ValueError as exc:
        raise BadRequest(400, f"JSON decode error: {exc}") from None
    model = _ChatBody if kind == "chat" else _CompletionBody
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(part) for part in first["loc"])
        raise BadRequest(400, f"{exc.error_count()} validation error(s): body.{where}: {first['msg']}", where) from None


def _check(body: _ChatBody | _CompletionBody) -> None:
    if body.stream_options is not None and not body.stream:
        raise BadRequest(400, "Stream options can only be defined when `stream=True`.", "stream_options")
    if body.n != 1:
        raise BadRequest(400, "this stand-in generates one choice: n must be 1", "n")
    if isinstance(body, _ChatBody):
        for i, message in enumerate(body.messages):
            if message.get("role") not in ("system", "user", "assistant", "tool", "developer"):
                raise BadRequest(400, f"messages[{i}]: unknown role {message.get('role')!r}", f"messages.{i}.role")


def decode_call(kind: Kind, raw: bytes, served: list[str], default_tokens: int) -> Call:
    """The request as a :class:`Call`, or the :class:`BadRequest` the server answers."""
    body = _validated(kind, raw)
    _check(body)
    model = body.model if body.model is not None else served[0]
    if model not in served:
        raise BadRequest(404, f"The model `{model}` does not exist.", "model")
    if isinstance(body, _ChatBody):
        prompt = prompt_of(body.messages)
        prompt_tokens = sum(4 + fake_token_count(_text(m.get("content"))) for m in body.messages) + 2
        limit = body.max_completion_tokens or body.max_tokens
    else:
        if isinstance(body.prompt, list) and len(body.prompt) != 1:
            raise BadRequest(400, "this stand-in completes one prompt per request", "prompt")
        prompt = body.prompt if isinstance(body.prompt, str) else body.prompt[0]
        prompt_tokens = fake_token_count(prompt) + 1
        limit = body.max_tokens
    num_tokens = limit if limit is not None else default_tokens
    if prompt_tokens + num_tokens > MAX_MODEL_LEN:
        raise BadRequest(
            400,
            f"This model's maximum context length is {MAX_MODEL_LEN} tokens. However, you requested "
            f"{prompt_tokens + num_tokens} tokens ({prompt_tokens} in the messages, {num_tokens} in the "
            "completion). Please reduce the length of the messages or completion.",
        )
    options = body.stream_options or _StreamOptions()
    return Call(
        kind=kind,
        model=model,
        prompt=prompt,
        prompt_tokens=prompt_tokens,
        num_tokens=num_tokens,
        finish_reason="length" if limit is not None else "stop",
        stream=body.stream,
        include_usage=bool(options.include_usage),
        continuous_usage=bool(options.include_usage and options.continuous_usage_stats),
    )
