"""OpenAI request bodies → gpuq job bodies.

``POST /v1/chat/completions`` and ``POST /v1/completions`` map onto one job each: messages or prompt,
and the sampling parameters onto the model server's options (``max_tokens`` / ``max_completion_tokens``
→ ``num_predict``; ``temperature``, ``top_p``, ``seed``, ``stop``, ``presence_penalty``,
``frequency_penalty`` by name). What gpuq cannot do (``n`` > 1, tools, logprobs, images, audio) is
refused with a 400 that names the parameter, before any job exists. Unknown fields are ignored, as
OpenAI-compatible servers do (the SDK adds new ones every release).
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from shared.errors import InvalidRequest

__all__ = ["ChatRequest", "CompletionRequest", "EmbeddingRequest", "parse_openai"]

_UNSUPPORTED = {
    "tools": "tool calls",
    "tool_choice": "tool calls",
    "functions": "function calls",
    "function_call": "function calls",
    "logprobs": "log probabilities",
    "top_logprobs": "log probabilities",
    "audio": "audio output",
    "prediction": "predicted outputs",
    "best_of": "best_of",
    "echo": "echo",
    "suffix": "suffix",
}


class _Sampling(BaseModel):
    model_config = ConfigDict(extra="ignore", protected_namespaces=())

    model: str = Field(min_length=1, max_length=200)
    max_tokens: int | None = Field(default=None, ge=1)
    temperature: float | None = Field(default=None, ge=0, le=2)
    top_p: float | None = Field(default=None, ge=0, le=1)
    seed: int | None = None
    stop: str | list[str] | None = None
    presence_penalty: float | None = Field(default=None, ge=-2, le=2)
    frequency_penalty: float | None = Field(default=None, ge=-2, le=2)
    n: int | None = Field(default=None, ge=1)
    stream: bool = False
    stream_options: dict[str, Any] | None = None
    user: str | None = None
    metadata: dict[str, str] | None = None

    def options(self, limit: int | None) -> dict[str, Any]:
        out: dict[str, Any] = {}
        if limit is not None:
            out["num_predict"] = limit
        for name in ("temperature", "top_p", "seed", "presence_penalty", "frequency_penalty"):
            if getattr(self, name) is not None:
                out[name] = getattr(self, name)
        if self.stop is not None:
            out["stop"] = [self.stop] if isinstance(self.stop, str) else list(self.stop)
        return out

    def include_usage(self) -> bool:
        return bool((self.stream_options or {}).get("include_usage"))


class ChatRequest(_Sampling):
    messages: list[dict[str, Any]] = Field(min_length=1)
    max_completion_tokens: int | None = Field(default=None, ge=1)

    def job_body(self) -> dict[str, Any]:
        messages = [_message(i, m) for i, m in enumerate(self.messages)]
        body: dict[str, Any] = {"model": self.model, "messages": messages}
        options = self.options(self.max_completion_tokens or self.max_tokens)
        return body | ({"options": options} if options else {})


class CompletionRequest(_Sampling):
    prompt: str | list[str]

    def job_body(self) -> dict[str, Any]:
        prompt = self.prompt
        if isinstance(prompt, list):
            if len(prompt) != 1:
                raise InvalidRequest("prompt: one prompt per request (send a batch for more)", param="prompt")
            prompt = prompt[0]
        if not prompt.strip():
            raise InvalidRequest("prompt: must not be empty", param="prompt")
        options = self.options(self.max_tokens)
        return {"model": self.model, "prompt": prompt} | ({"options": options} if options else {})


class EmbeddingRequest(BaseModel):
    model_config = ConfigDict(extra="ignore", protected_namespaces=())

    model: str = Field(min_length=1, max_length=200)
    input: str | list[str] = Field(min_length=1)
    encoding_format: Literal["float", "base64"] = "float"  # the openai SDK asks for base64 by default
    dimensions: None = None  # the model's own size only: a value is refused, naming the parameter
    user: str | None = None

    def inputs(self) -> list[str]:
        items = [self.input] if isinstance(self.input, str) else list(self.input)
        if not items or any(not isinstance(i, str) or not i for i in items):
            raise InvalidRequest("input: one or more non-empty strings", param="input")
        return items


def _text(content: Any, where: str) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        parts = []
        for part in content:
            if not isinstance(part, dict) or part.get("type") != "text" or not isinstance(part.get("text"), str):
                kind = part.get("type") if isinstance(part, dict) else type(part).__name__
                raise InvalidRequest(f"{where}: content parts of type {kind!r} are not supported", param=where)
            parts.append(part["text"])
        return "".join(parts)
    if content is None:
        return ""
    raise InvalidRequest(f"{where}: content must be a string or a list of text parts", param=where)


def _message(index: int, message: dict[str, Any]) -> dict[str, Any]:
    where = f"messages[{index}]"
    role = message.get("role")
    if role == "developer":
        role = "system"  # OpenAI's newer name for the system role
    if role not in ("system", "user", "assistant", "tool"):
        raise InvalidRequest(
            f"{where}.role: {role!r} is not one of system, developer, user, assistant, tool", param=where
        )
    if message.get("tool_calls"):
        raise InvalidRequest(f"{where}.tool_calls: tool calls are not supported", param=where)
    return {"role": role, "content": _text(message.get("content"), f"{where}.content")}


def parse_openai(model: type[_Sampling] | type[EmbeddingRequest], body: Any) -> Any:
    """Validate an OpenAI request body; a 400 naming the first bad parameter otherwise."""
    if not isinstance(body, dict):
        raise InvalidRequest("the body must be a JSON object")
    for name, what in _UNSUPPORTED.items():
        if body.get(name) not in (None, False, [], {}):
            raise InvalidRequest(f"{name}: {what} are not supported by gpuq", param=name, code="unsupported_parameter")
    try:
        parsed = model.model_validate(body)
    except ValidationError as exc:
        first = exc.errors()[0]
        param = ".".join(str(p) for p in first["loc"]) or None
        raise InvalidRequest(f"{param or 'body'}: {first['msg']}", param=param) from None
    if isinstance(parsed, _Sampling) and (parsed.n or 1) > 1:
        raise InvalidRequest("n: only n=1 is supported", param="n", code="unsupported_parameter")
    return parsed
