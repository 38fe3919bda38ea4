"""A protocol-faithful, offline stand-in for an Ollama server.

No real Ollama (and no GPU) runs on the machines that test and demo gpuq, so everything that
talks to Ollama is exercised against this one aiohttp server instead. It follows Ollama's
published REST API (docs/api.md) and the wire details of Ollama's Go server, so the official
``ollama`` Python package, curl, or gpuq's own agent can point at it unchanged.

Reproduced
    * ``POST /api/generate`` and ``POST /api/chat``: NDJSON streaming by default (one JSON object
      per line, ``Content-Type: application/x-ndjson``), ``"stream": false`` gives one JSON object.
      Field names and order as the Go server writes them; ``created_at`` in RFC 3339 with
      nanoseconds; the final line carries ``done_reason`` ("stop" / "length"), ``total_duration``,
      ``load_duration``, ``prompt_eval_count``, ``prompt_eval_duration``, ``eval_count`` and
      ``eval_duration`` (nanoseconds), and for generate ``context`` (not in raw mode).
    * An empty prompt (generate) or empty ``messages`` (chat) only loads the model and answers
      ``done_reason: "load"``; with ``keep_alive: 0`` it unloads and answers ``"unload"``.
    * ``options.num_predict`` caps the output: when it is given (> 0) exactly that many tokens are
      produced and ``done_reason`` is "length"; otherwise ``default_num_tokens`` and "stop".
    * ``keep_alive`` as Ollama parses it (JSON number = seconds, string = Go duration such as
      "5m"; negative = forever; 0 = unload after the request; default 5m) drives ``/api/ps``.
      A model that is not loaded takes ``load_delay_s`` to load on first use (shared by
      concurrent requests) and that time shows up in ``load_duration``.
    * ``GET /api/tags``, ``GET /api/ps``, ``POST /api/show``, ``DELETE /api/delete``,
      ``POST /api/pull`` (progress lines: "pulling manifest"; per layer "pulling <12 hex digits>"
      with ``digest``/``total``/``completed`` - the Go server's wording, the docs' "downloading
      <digest>" is a placeholder; "verifying sha256 digest", "writing manifest", "success";
      ``stream: false`` gives ``{"status": "success"}``; afterwards the model is listed; a name
      outside ``pullable_models`` gets ``pull model manifest: file does not exist``), ``GET
      /api/version``,
      ``GET``/``HEAD /`` -> ``Ollama is running``; gin's plain-text 404/405 for unknown routes.
    * Errors as ``{"error": "..."}`` with Ollama's status codes and texts: unknown model -> 404
      ``model "x" not found, try pulling it first``; missing model -> 400 ``model is required``;
      empty body -> 400 ``missing request body``; malformed JSON / wrong field types -> 400 with
      Go's ``encoding/json`` message; bad ``keep_alive`` -> 400 with Go's ``time`` message;
      ``think`` on a model without thinking -> 400; more than ``max_queue`` requests in flight ->
      503 ``server busy, please try again.  maximum pending requests exceeded``
      (``OLLAMA_MAX_QUEUE``, 512 by default); an error before the first token is a plain HTTP
      error, one after streaming began is an ``{"error": ...}`` line, as Ollama sends them.
    * Client disconnects: generation stops at the next token when the client goes away (Ollama
      cancels the request context and the runner drops the sequence).  Stopped generations are
      counted as interrupted in the stats.

Deterministic output
    The text is a pure function of (canonical model name, prompt, number of tokens): the prompt is
    ``prompt`` for generate and the content of the last ``user`` message for chat (system prompt,
    template, images, context and sampling options do not change it). Use
    :func:`fake_completion_tokens` / :func:`fake_completion_text` to compute it. Tokens are words
    with a leading space, and ``fake_completion_tokens(m, p, k)`` is a prefix of the list for any
    larger count, so a ``num_predict`` cut is a prefix of the uncut text.

Not reproduced
    Real inference (``format``/JSON mode and schemas, ``options.stop``, ``suffix``, ``images``,
    ``tools``/tool calls, ``think`` output, ``seed``/``temperature`` and ``logprobs`` are accepted
    and ignored), the ``context`` input (accepted, counted in ``prompt_eval_count``, but does not
    change the text), embeddings, create/copy/push/blobs, the OpenAI-compatible ``/v1`` routes,
    VRAM accounting and eviction (any number of models stay loaded; ``size_vram == size``),
    ``OLLAMA_NUM_PARALLEL`` unless ``num_parallel`` is set, CORS / allowed-host checks, and
    registry authentication. ``max_queue`` counts every admitted generate/chat request (loading,
    waiting for a slot or generating), where Ollama counts only those not yet scheduled. Token
    counts are approximations (words and punctuation). Newer Ollama releases word the
    unknown-model error ``model 'x' not found``; this stand-in keeps the long-standing
    ``model "x" not found, try pulling it first`` text.

Test hooks (not part of Ollama; all off by default)
    ``GET /__fake__/stats`` (``DELETE`` resets): requests started per path, generations started
    (total, per path, per prompt key - see :func:`prompt_key`), completed and interrupted, model
    loads/unloads, pulls, queue rejections, faults fired, plus the in-flight and active gauges.
    ``GET``/``POST``/``DELETE /__fake__/faults``: arm one-shot faults (see :class:`FakeFaults`)
    and change ``token_delay_s``, ``load_delay_s``, ``pull_delay_s``, ``default_num_tokens``,
    ``max_queue`` and ``num_parallel`` while the server runs. The same faults can be set up front
    in ``FakeOllamaConfig.faults``.

Run it with ``python -m shared.fakes.ollama --port 11434`` (see :func:`main`), in-process with
:func:`start_fake_ollama`, or from synchronous tests with :func:`serve_in_thread`.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import hashlib
import itertools
import json
import math
import re
import sys
import time
import zlib
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, Final, Literal

from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from shared.fakes.serving import serve_in_thread as _serve_in_thread
from shared.fakes.serving import serve_until_signalled, start_site

__all__ = [
    "DEFAULT_MODELS",
    "MAX_QUEUE_ERROR",
    "FakeFaults",
    "FakeOllamaConfig",
    "FakeOllamaServer",
    "FakeOllamaState",
    "build_app",
    "canonical_model_name",
    "fake_completion_text",
    "fake_completion_tokens",
    "get_state",
    "main",
    "model_not_found_error",
    "prompt_key",
    "serve_in_thread",
    "start_fake_ollama",
]

DEFAULT_MODELS: Final[tuple[str, ...]] = ("llama3.2:1b", "qwen2.5:0.5b")
MAX_QUEUE_ERROR: Final = "server busy, please try again.  maximum pending requests exceeded"
_FOREVER_NS: Final = 2**63 - 1  # Go's math.MaxInt64 duration, what Ollama uses for keep_alive < 0
_NDJSON: Final = "application/x-ndjson"
_CONTROL_PREFIX: Final = "/__fake__/"


def model_not_found_error(model: str) -> str:
    """The error text Ollama sends with a 404 for a model that is not pulled."""
    return f"model {_go_quote(model)} not found, try pulling it first"


# --------------------------------------------------------------------------------------------
# Configuration
# --------------------------------------------------------------------------------------------


class FakeFaults(BaseModel):
    """Faults to inject, armed for the next ``times`` requests they apply to (-1: until cleared).

    Precedence when several are set: ``error_status`` (checked when a generate/chat/pull request
    has been validated, including load-only requests), then the token faults, which apply to
    requests that actually generate: ``fail_after_tokens`` (close the connection after N tokens,
    without a final line - for ``stream: false`` before any response), ``stall_after_tokens``
    (stop sending after N tokens and hold the connection open until the client leaves) and
    ``error_after_tokens`` (send Ollama's mid-stream ``{"error": ...}`` line after N tokens; with
    ``stream: false`` a 500). Once the fault has fired ``times`` times, all of them are cleared.
    """

    model_config = ConfigDict(extra="forbid", validate_assignment=True)

    error_status: int | None = Field(default=None, ge=400, le=599)
    error_message: str | None = None
    fail_after_tokens: int | None = Field(default=None, ge=0)
    stall_after_tokens: int | None = Field(default=None, ge=0)
    error_after_tokens: int | None = Field(default=None, ge=0)
    times: int = Field(default=1, ge=-1)

    def armed(self) -> bool:
        return self.times != 0 and (self.error_status is not None or self.token_fault() is not None)

    def token_fault(self) -> tuple[Literal["fail", "stall", "error"], int] | None:
        if self.fail_after_tokens is not None:
            return "fail", self.fail_after_tokens
        if self.stall_after_tokens is not None:
            return "stall", self.stall_after_tokens
        if self.error_after_tokens is not None:
            return "error", self.error_after_tokens
        return None

    def message_for(self, status: int) -> str:
        if self.error_message is not None:
            return self.error_message
        return {
            404: "model not found",
            500: "llama runner process has terminated: exit status 2",
            503: MAX_QUEUE_ERROR,
        }.get(status, "fake ollama: injected fault")


class FakeOllamaConfig(BaseModel):
    """Settings of one stand-in server. Delays are in seconds."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)

    models: list[str] = Field(default_factory=lambda: list(DEFAULT_MODELS))
    """Models already pulled when the server starts (listed by /api/tags)."""
    token_delay_s: float = Field(default=0.005, ge=0)
    """Time per generated token; 0 streams as fast as the event loop allows."""
    load_delay_s: float = Field(default=0.2, ge=0)
    """Time to load a model that is not loaded (first use, or after keep_alive expired)."""
    default_num_tokens: int = Field(default=24, ge=1)
    """Tokens generated when options.num_predict is not given."""
    max_queue: int = Field(default=512, ge=1)
    """OLLAMA_MAX_QUEUE: generate/chat requests in flight beyond this get a 503."""
    num_parallel: int = Field(default=0, ge=0)
    """OLLAMA_NUM_PARALLEL per model; 0 = no limit (the stand-in never slows concurrent streams)."""
    default_keep_alive_s: float = 300.0
    """OLLAMA_KEEP_ALIVE in seconds; negative keeps models loaded forever."""
    pull_delay_s: float = Field(default=0.05, ge=0)
    """Time a pull takes from the first progress line to "success"."""
    pullable_models: list[str] | None = None
    """Names /api/pull can find in the "registry"; None means any well-formed name."""
    version: str = "0.5.7"
    """What GET /api/version reports."""
    faults: FakeFaults = Field(default_factory=FakeFaults)


class _LiveUpdate(BaseModel):
    """Body of POST /__fake__/faults."""

    model_config = ConfigDict(extra="forbid")

    clear: bool = False
    error_status: int | None = Field(default=None, ge=400, le=599)
    error_message: str | None = None
    fail_after_tokens: int | None = Field(default=None, ge=0)
    stall_after_tokens: int | None = Field(default=None, ge=0)
    error_after_tokens: int | None = Field(default=None, ge=0)
    times: int | None = Field(default=None, ge=-1)
    token_delay_s: float | None = Field(default=None, ge=0)
    load_delay_s: float | None = Field(default=None, ge=0)
    pull_delay_s: float | None = Field(default=None, ge=0)
    default_num_tokens: int | None = Field(default=None, ge=1)
    max_queue: int | None = Field(default=None, ge=1)
    num_parallel: int | None = Field(default=None, ge=0)


_FAULT_FIELDS: Final = frozenset(FakeFaults.model_fields)
_LIVE_CONFIG_FIELDS: Final = frozenset(
    {"token_delay_s", "load_delay_s", "pull_delay_s", "default_num_tokens", "max_queue", "num_parallel"}
)


# --------------------------------------------------------------------------------------------
# Deterministic text
# --------------------------------------------------------------------------------------------

_VOCAB_TEXT: Final = """
    the a model light sky blue because of and to in is it that this with as for on are be by
    from at or an which when more than water air sun scattering shorter longer wavelengths
    colors we see during day night energy small large particles molecules atmosphere called
    effect result each other some many most through into between can will would also very much
    its their there these those how why what where answer question example simple clear
    important different same first next finally data system process value time number point part
    way kind case
"""
_VOCAB: Final[tuple[str, ...]] = tuple(_VOCAB_TEXT.split())


def canonical_model_name(name: str) -> str:
    """Ollama's short display name: registry/library prefix dropped, ``:latest`` added if no tag."""
    n = name.strip()
    for prefix in ("registry.ollama.ai/", "library/"):
        if n.lower().startswith(prefix):
            n = n[len(prefix) :]
    if ":" not in n.rsplit("/", 1)[-1]:
        n += ":latest"
    return n


def _token_stream(model: str, prompt: str) -> Iterator[str]:
    """The endless token sequence for (model, prompt); every output is a prefix of it."""
    seed = hashlib.blake2b(f"{canonical_model_name(model).lower()}\x00{prompt}".encode(), digest_size=32).digest()
    in_sentence = 0
    for block in itertools.count():
        chunk = hashlib.blake2b(seed + block.to_bytes(8, "little"), digest_size=64).digest()
        for i in range(0, len(chunk), 2):
            word = _VOCAB[chunk[i] % len(_VOCAB)]
            if in_sentence == 0:
                word = word.capitalize()
            in_sentence += 1
            if in_sentence >= 4 and chunk[i + 1] % 6 == 0:
                word += "."
                in_sentence = 0
            elif in_sentence >= 5 and chunk[i + 1] % 11 == 1:
                word += ","
            yield " " + word


def fake_completion_tokens(model: str, prompt: str, num_tokens: int) -> list[str]:
    """The tokens the stand-in produces for (model, prompt) when it generates ``num_tokens``.

    ``prompt`` is the generate ``prompt`` or the chat's last user message content. Model names are
    compared the way Ollama does (``llama3.2`` is ``llama3.2:latest``; case does not matter). The
    result for a smaller count is always a prefix of the result for a larger one.
    """
    return list(itertools.islice(_token_stream(model, prompt), max(num_tokens, 0)))


def fake_completion_text(model: str, prompt: str, num_tokens: int) -> str:
    """``"".join(fake_completion_tokens(model, prompt, num_tokens))``."""
    return "".join(fake_completion_tokens(model, prompt, num_tokens))


def prompt_key(prompt: str) -> str:
    """The key under which ``/__fake__/stats`` counts generations for a prompt."""
    if len(prompt) <= 64:
        return prompt
    return prompt[:48] + "...sha256:" + hashlib.sha256(prompt.encode()).hexdigest()[:12]


_WORD_RE: Final = re.compile(r"\w+|[^\w\s]")


def _fake_token_count(text: str) -> int:
    return len(_WORD_RE.findall(text))


def _fake_token_ids(text: str) -> list[int]:
    return [zlib.crc32(w.encode()) % 128_000 for w in _WORD_RE.findall(text)]


# --------------------------------------------------------------------------------------------
# Go-compatible encoding helpers
# --------------------------------------------------------------------------------------------

_GO_ESCAPES: Final = {
    "<": "\\u003c",
    ">": "\\u003e",
    "&": "\\u0026",
    "\u2028": "\\u2028",
    "\u2029": "\\u2029",
}
_GO_ESCAPE_RE: Final = re.compile("[<>&\u2028\u2029]")


def _dumps(obj: Any) -> str:
    """JSON as Go's encoding/json writes it: compact, UTF-8, HTML characters escaped."""
    s = json.dumps(obj, ensure_ascii=False, separators=(",", ":"))
    return _GO_ESCAPE_RE.sub(lambda m: _GO_ESCAPES[m.group(0)], s) if _GO_ESCAPE_RE.search(s) else s


def _go_quote(s: str) -> str:
    """Go's %q for ordinary strings."""
    return json.dumps(s, ensure_ascii=False)


def _go_quote_char(c: str) -> str:
    """Go encoding/json's quoteChar, used in syntax error messages."""
    if c == "'":
        return "'\\''"
    if c == '"':
        return "'\"'"
    named = {"\a": "\\a", "\b": "\\b", "\f": "\\f", "\n": "\\n", "\r": "\\r", "\t": "\\t", "\v": "\\v"}
    if c in named:
        return f"'{named[c]}'"
    if c.isprintable():
        return f"'{c}'"
    return f"'\\x{ord(c):02x}'" if ord(c) < 0x80 else f"'\\u{ord(c):04x}'"


def _rfc3339(ns: int) -> str:
    """Go's time.RFC3339Nano in UTC: trailing zeros of the fraction trimmed."""
    sec, frac = divmod(ns, 1_000_000_000)
    base = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(sec))
    if frac:
        return f"{base}.{frac:09d}".rstrip("0") + "Z"
    return base + "Z"


class _NowCache:
    """created_at for every token without a strftime per token."""

    def __init__(self) -> None:
        self._cached: tuple[int, str] = (-1, "")  # one attribute, so threads never see half an update

    def __call__(self) -> str:
        sec, frac = divmod(time.time_ns(), 1_000_000_000)
        cached_sec, base = self._cached
        if sec != cached_sec:
            base = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(sec))
            self._cached = (sec, base)
        if frac:
            return f"{base}.{frac:09d}".rstrip("0") + "Z"
        return base + "Z"


_now = _NowCache()

_DURATION_UNITS: Final = {
    "ns": 1,
    "us": 1_000,
    "\u00b5s": 1_000,
    "\u03bcs": 1_000,
    "ms": 1_000_000,
    "s": 1_000_000_000,
    "m": 60_000_000_000,
    "h": 3_600_000_000_000,
}
_DURATION_PART: Final = re.compile(r"(\d*)(?:\.(\d*))?")


def _parse_go_duration(text: str) -> int:
    """time.ParseDuration, in nanoseconds, with Go's error messages."""
    quoted = '"' + text + '"'
    s = text
    neg = False
    if s[:1] in ("+", "-"):
        neg = s[0] == "-"
        s = s[1:]
    if s == "0":
        return 0
    if not s:
        raise ValueError(f"time: invalid duration {quoted}")
    total = 0.0
    while s:
        m = _DURATION_PART.match(s)
        assert m is not None  # the pattern matches the empty string
        whole, frac = m.group(1), m.group(2)
        if not whole and not frac:
            raise ValueError(f"time: invalid duration {quoted}")
        s = s[m.end() :]
        i = 0
        while i < len(s) and s[i] != "." and not s[i].isdigit():
            i += 1
        unit, s = s[:i], s[i:]
        if not unit:
            raise ValueError(f"time: missing unit in duration {quoted}")
        if unit not in _DURATION_UNITS:
            raise ValueError(f'time: unknown unit "{unit}" in duration {quoted}')
        total += float(f"{whole or '0'}.{frac or '0'}") * _DURATION_UNITS[unit]
    return -int(total) if neg else int(total)


def _go_type_name(value: Any) -> str:
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, (int, float)):
        return "float64"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "[]interface {}"
    if isinstance(value, dict):
        return "map[string]interface {}"
    return "<nil>"


def _parse_keep_alive(value: Any) -> int:
    """api.Duration.UnmarshalJSON: number = seconds, string = Go duration, negative = forever."""
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        raise ValueError(f"Unsupported type: '{_go_type_name(value)}'")
    if isinstance(value, str):
        ns = _parse_go_duration(value)
    else:
        if value < 0:
            return _FOREVER_NS
        ns = int(value * 1_000_000_000)
    return _FOREVER_NS if ns < 0 else min(ns, _FOREVER_NS)


def _json_kind(value: Any) -> str:
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, (int, float)):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    return "object"


_Schema = dict[str, str]
_GENERATE_SCHEMA: Final[_Schema] = {
    "model": "string",
    "prompt": "string",
    "suffix": "string",
    "system": "string",
    "template": "string",
    "context": "[]int",
    "stream": "bool",
    "raw": "bool",
    "images": "[]string",
    "options": "map",
    "keep_alive": "duration",
}
_CHAT_SCHEMA: Final[_Schema] = {
    "model": "string",
    "messages": "messages",
    "stream": "bool",
    "options": "map",
    "keep_alive": "duration",
    "tools": "array",
}
_PULL_SCHEMA: Final[_Schema] = {
    "model": "string",
    "name": "string",
    "insecure": "bool",
    "stream": "bool",
    "username": "string",
    "password": "string",
}
_MODEL_SCHEMA: Final[_Schema] = {"model": "string", "name": "string"}


def _type_error(struct: str, schema: _Schema, body: dict[str, Any]) -> str | None:
    """The first error Go's decoder would report for fields of the wrong JSON type."""

    def bad(value: Any, path: str, go_type: str, kind: str | None = None) -> str:
        what = kind or _json_kind(value)
        return f"json: cannot unmarshal {what} into Go struct field {struct}.{path} of type {go_type}"

    for key, value in body.items():
        kind = schema.get(key)
        if kind is None or value is None:
            continue
        if kind == "string" and not isinstance(value, str):
            return bad(value, key, "string")
        if kind == "bool" and not isinstance(value, bool):
            return bad(value, key, "bool")
        if kind == "map" and not isinstance(value, dict):
            return bad(value, key, "map[string]interface {}")
        if kind == "array" and not isinstance(value, list):
            return bad(value, key, "[]api.Tool")
        if kind == "[]int":
            if not isinstance(value, list):
                return bad(value, key, "[]int")
            for item in value:
                if isinstance(item, bool) or not isinstance(item, (int, float)):
                    return bad(item, key, "int")
                if isinstance(item, float) and not item.is_integer():
                    return bad(item, key, "int", f"number {item}")
        if kind == "[]string":
            if not isinstance(value, list):
                return bad(value, key, "[]api.ImageData")
            for item in value:
                if not isinstance(item, str):
                    return bad(item, key, "api.ImageData")
        if kind == "messages":
            if not isinstance(value, list):
                return bad(value, key, "[]api.Message")
            for item in value:
                if item is None:
                    continue
                if not isinstance(item, dict):
                    return bad(item, key, "api.Message")
                for sub in ("role", "content"):
                    if item.get(sub) is not None and not isinstance(item[sub], str):
                        return bad(item[sub], f"{key}.{sub}", "string")
    return None


def _innermost_container(doc: str, pos: int) -> str:
    stack: list[str] = []
    in_string = escaped = False
    for ch in doc[:pos]:
        if in_string:
            if escaped:
                escaped = False
            elif ch == "\\":
                escaped = True
            elif ch == '"':
                in_string = False
        elif ch == '"':
            in_string = True
        elif ch in "{[":
            stack.append(ch)
        elif ch in "}]" and stack:
            stack.pop()
    return stack[-1] if stack else ""


def _go_syntax_error(doc: str, err: json.JSONDecodeError) -> str:
    pos = err.pos
    if pos >= len(doc) or err.msg.startswith("Unterminated string"):
        return "unexpected EOF"
    c = _go_quote_char(doc[pos])
    msg = err.msg
    if msg.startswith("Expecting property name"):
        return f"invalid character {c} looking for beginning of object key string"
    if msg.startswith("Expecting ':'"):
        return f"invalid character {c} after object key"
    if msg.startswith("Expecting ','"):
        where = "object key:value pair" if _innermost_container(doc, pos) == "{" else "array element"
        return f"invalid character {c} after {where}"
    if msg.startswith("Invalid control character"):
        return f"invalid character {c} in string literal"
    if msg.startswith("Invalid \\"):
        return f"invalid character {c} in string escape code"
    return f"invalid character {c} looking for beginning of value"


class _BadRequest(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


_JSON_WS: Final = " \t\r\n"
_decoder: Final = json.JSONDecoder()


async def _bind_json(request: web.Request, struct: str, schema: _Schema) -> dict[str, Any]:
    """gin's ShouldBindJSON: first JSON value of the body, Go's error texts on failure."""
    raw = await request.read()
    doc = raw.decode("utf-8", errors="replace")
    start = len(doc) - len(doc.lstrip(_JSON_WS))
    if start == len(doc):
        raise _BadRequest(400, "missing request body")
    try:
        obj, _ = _decoder.raw_decode(doc, start)
    except json.JSONDecodeError as exc:
        raise _BadRequest(400, _go_syntax_error(doc, exc)) from None
    if obj is None:
        return {}
    if not isinstance(obj, dict):
        raise _BadRequest(400, f"json: cannot unmarshal {_json_kind(obj)} into Go value of type api.{struct}")
    problem = _type_error(struct, schema, obj)
    if problem is not None:
        raise _BadRequest(400, problem)
    return obj


def _error(status: int, message: str) -> web.Response:
    return web.Response(
        status=status, text=_dumps({"error": message}), content_type="application/json", charset="utf-8"
    )


def _json(payload: Any, status: int = 200) -> web.Response:
    return web.Response(status=status, text=_dumps(payload), content_type="application/json", charset="utf-8")


# --------------------------------------------------------------------------------------------
# Models
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Spec:
    family: str
    parameter_size: str
    quantization: str
    size: int


_KNOWN: Final[dict[str, _Spec]] = {
    "llama3.2:1b": _Spec("llama", "1.2B", "Q8_0", 1_321_098_329),
    "llama3.2:3b": _Spec("llama", "3.2B", "Q4_K_M", 2_019_393_189),
    "llama3.2:latest": _Spec("llama", "3.2B", "Q4_K_M", 2_019_393_189),
    "llama3.1:8b": _Spec("llama", "8.0B", "Q4_K_M", 4_920_753_328),
    "llama3.1:latest": _Spec("llama", "8.0B", "Q4_K_M", 4_920_753_328),
    "qwen2.5:0.5b": _Spec("qwen2", "494.03M", "Q4_K_M", 397_821_319),
    "qwen2.5:1.5b": _Spec("qwen2", "1.5B", "Q4_K_M", 986_061_892),
    "qwen2.5:7b": _Spec("qwen2", "7.6B", "Q4_K_M", 4_683_087_332),
    "qwen2.5:latest": _Spec("qwen2", "7.6B", "Q4_K_M", 4_683_087_332),
}
_SMALL_LAYERS: Final = (
    ("application/vnd.ollama.image.template", 1_429),
    ("application/vnd.ollama.image.license", 7_711),
    ("application/vnd.ollama.image.params", 96),
)


def _spec_for(canonical: str) -> _Spec:
    known = _KNOWN.get(canonical.lower())
    if known is not None:
        return known
    base, _, tag = canonical.rpartition("/")[2].partition(":")
    family = re.match(r"[a-z]*", base.lower())
    params = re.search(r"(\d+(?:\.\d+)?)([bm])", tag.lower())
    if params:
        amount = float(params.group(1)) * (1e9 if params.group(2) == "b" else 1e6)
        label = params.group(1) + params.group(2).upper()
    else:
        amount, label = 7e9, "7B"
    return _Spec((family.group(0) if family else "") or "llama", label, "Q4_K_M", int(amount * 0.6) + 10_000)


def _valid_model_name(name: str) -> bool:
    return bool(re.fullmatch(r"[A-Za-z0-9_][A-Za-z0-9_.\-/]*(:[A-Za-z0-9_][A-Za-z0-9_.\-]*)?", name.strip()))


@dataclass
class _Model:
    name: str
    spec: _Spec
    modified_at_ns: int
    digest: str = ""
    # runtime
    loaded: bool = False
    loading: asyncio.Task[None] | None = None
    refcount: int = 0
    keep_alive_ns: int = 0
    expires_at_ns: int = 0
    slots: tuple[int, asyncio.Semaphore] | None = None

    def __post_init__(self) -> None:
        if not self.digest:
            self.digest = hashlib.sha256(f"fake-ollama:{self.name}".encode()).hexdigest()

    def layers(self) -> list[tuple[str, int]]:
        small = sum(size for _, size in _SMALL_LAYERS)
        kinds = [("application/vnd.ollama.image.model", max(self.spec.size - small, 1)), *_SMALL_LAYERS]
        return [
            ("sha256:" + hashlib.sha256(f"fake-ollama:{self.name}:{kind}".encode()).hexdigest(), size)
            for kind, size in kinds
        ]

    def details(self) -> dict[str, Any]:
        return {
            "parent_model": "",
            "format": "gguf",
            "family": self.spec.family,
            "families": [self.spec.family],
            "parameter_size": self.spec.parameter_size,
            "quantization_level": self.spec.quantization,
        }


# --------------------------------------------------------------------------------------------
# Server state
# --------------------------------------------------------------------------------------------


@dataclass
class _Stats:
    requests: Counter[str] = field(default_factory=Counter)
    generations_started: int = 0
    generations_by_path: Counter[str] = field(default_factory=Counter)
    generations_by_prompt: Counter[str] = field(default_factory=Counter)
    generations_completed: int = 0
    generations_interrupted: int = 0
    model_loads: int = 0
    model_unloads: int = 0
    pulls_completed: int = 0
    rejected_queue_full: int = 0
    faults_fired: int = 0

    def to_json(self, inflight: int, active: int) -> dict[str, Any]:
        return {
            "requests": dict(self.requests),
            "generations_started": self.generations_started,
            "generations_by_path": dict(self.generations_by_path),
            "generations_by_prompt": dict(self.generations_by_prompt),
            "generations_completed": self.generations_completed,
            "generations_interrupted": self.generations_interrupted,
            "model_loads": self.model_loads,
            "model_unloads": self.model_unloads,
            "pulls_completed": self.pulls_completed,
            "rejected_queue_full": self.rejected_queue_full,
            "faults_fired": self.faults_fired,
            "inflight": inflight,
            "active_generations": active,
        }


class FakeOllamaState:
    """Everything one server instance knows. Lives on the server's event loop."""

    def __init__(self, config: FakeOllamaConfig) -> None:
        self.config = config.model_copy(deep=True)
        self.faults = self.config.faults.model_copy()
        self.stats = _Stats()
        self.inflight = 0
        self.active = 0
        self.shutting_down = asyncio.Event()
        now = time.time_ns()
        self.models: dict[str, _Model] = {}
        for i, name in enumerate(self.config.models):
            self.add_model(name, now - i * 1_000_000_000)

    # models -------------------------------------------------------------------------------

    def add_model(self, name: str, modified_at_ns: int | None = None) -> _Model:
        canonical = canonical_model_name(name)
        key = canonical.lower()
        existing = self.models.get(key)
        stamp = time.time_ns() if modified_at_ns is None else modified_at_ns
        if existing is not None:
            existing.modified_at_ns = stamp
            return existing
        model = _Model(name=canonical, spec=_spec_for(canonical), modified_at_ns=stamp)
        self.models[key] = model
        return model

    def lookup(self, name: str) -> _Model | None:
        return self.models.get(canonical_model_name(name).lower())

    def _expire(self, model: _Model, now_ns: int) -> None:
        if model.loaded and model.refcount == 0 and model.expires_at_ns <= now_ns:
            model.loaded = False
            self.stats.model_unloads += 1

    def loaded_models(self) -> list[_Model]:
        now = time.time_ns()
        for model in self.models.values():
            self._expire(model, now)
        return [m for m in self.models.values() if m.loaded]

    def default_keep_alive_ns(self) -> int:
        ka = self.config.default_keep_alive_s
        return _FOREVER_NS if ka < 0 else int(ka * 1_000_000_000)

    async def acquire(self, model: _Model, keep_alive_ns: int) -> None:
        """Pin the model for one request and wait until it is loaded."""
        self._expire(model, time.time_ns())
        model.refcount += 1
        model.keep_alive_ns = keep_alive_ns
        if model.loaded:
            return
        if model.loading is None:
            model.loading = asyncio.create_task(self._load(model))
        try:
            await asyncio.shield(model.loading)
        except BaseException:
            self.release(model)
            raise

    async def _load(self, model: _Model) -> None:
        try:
            if self.config.load_delay_s > 0:
                await asyncio.sleep(self.config.load_delay_s)
            model.loaded = True
            self.stats.model_loads += 1
        finally:
            model.loading = None

    def release(self, model: _Model) -> None:
        model.refcount -= 1
        if model.refcount > 0 or not model.loaded:
            return
        if model.keep_alive_ns == 0:
            model.loaded = False
            self.stats.model_unloads += 1
        else:
            model.expires_at_ns = min(time.time_ns() + model.keep_alive_ns, _FOREVER_NS)

    def unload(self, model: _Model) -> None:
        model.keep_alive_ns = 0
        if model.loaded and model.refcount == 0:
            model.loaded = False
            self.stats.model_unloads += 1

    def slots_for(self, model: _Model) -> asyncio.Semaphore | None:
        n = self.config.num_parallel
        if n <= 0:
            return None
        if model.slots is None or model.slots[0] != n:
            model.slots = (n, asyncio.Semaphore(n))
        return model.slots[1]

    # faults -------------------------------------------------------------------------------

    def _consume_fault(self) -> FakeFaults:
        fired = self.faults.model_copy()
        self.stats.faults_fired += 1
        if self.faults.times > 0:
            self.faults.times -= 1
            if self.faults.times == 0:
                self.faults = FakeFaults()
        return fired

    def take_error_fault(self) -> tuple[int, str] | None:
        f = self.faults
        if not f.armed() or f.error_status is None:
            return None
        fired = self._consume_fault()
        assert fired.error_status is not None
        return fired.error_status, fired.message_for(fired.error_status)

    def take_token_fault(self) -> tuple[Literal["fail", "stall", "error"], int, str] | None:
        f = self.faults
        token_fault = f.token_fault()
        if not f.armed() or f.error_status is not None or token_fault is None:
            return None
        fired = self._consume_fault()
        return token_fault[0], token_fault[1], fired.message_for(500)

    def apply_update(self, update: _LiveUpdate) -> None:
        if update.clear:
            self.faults = FakeFaults()
        given = update.model_fields_set
        fault_changes = {k: getattr(update, k) for k in given & _FAULT_FIELDS}
        if fault_changes:
            merged = self.faults.model_dump() | fault_changes
            if merged.get("times") is None:
                merged["times"] = 1
            if "times" not in fault_changes and self.faults.times == 0:
                merged["times"] = 1
            self.faults = FakeFaults.model_validate(merged)
        for key in given & _LIVE_CONFIG_FIELDS:
            value = getattr(update, key)
            if value is not None:
                setattr(self.config, key, value)

    def control_view(self) -> dict[str, Any]:
        return {
            "faults": self.faults.model_dump(),
            "config": {k: getattr(self.config, k) for k in sorted(_LIVE_CONFIG_FIELDS)},
        }


_STATE: Final = web.AppKey("fake_ollama_state", FakeOllamaState)


def get_state(app: web.Application) -> FakeOllamaState:
    """The live state of an app made by :func:`build_app` (use only from its event loop)."""
    return app[_STATE]


# --------------------------------------------------------------------------------------------
# Inference
# --------------------------------------------------------------------------------------------


def _closing(request: web.Request) -> bool:
    transport = request.transport
    return transport is None or transport.is_closing()


def _num_predict(options: dict[str, Any] | None) -> int | None:
    if not options or options.get("num_predict") is None:
        return None
    value = options["num_predict"]
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise _BadRequest(500, 'option "num_predict" must be of type integer')
    n = int(value)
    return n if n > 0 else None


def _check_think(body: dict[str, Any], model_field: str) -> None:
    think = body.get("think")
    if think is None or think is False:
        return
    if isinstance(think, str):
        if think in ("", "false"):
            return
        raise _BadRequest(400, f"think value {_go_quote(think)} is not supported for this model")
    raise _BadRequest(400, f"{_go_quote(model_field)} does not support thinking")


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
            total += 4 + (_fake_token_count(content) if isinstance(content, str) else 0)
    return total + 2


async def _inference(request: web.Request, kind: Literal["generate", "chat"]) -> web.StreamResponse:
    start = time.perf_counter_ns()
    state = request.app[_STATE]
    try:
        if kind == "generate":
            body = await _bind_json(request, "GenerateRequest", _GENERATE_SCHEMA)
        else:
            body = await _bind_json(request, "ChatRequest", _CHAT_SCHEMA)
        keep_alive = (
            _parse_keep_alive(body["keep_alive"])
            if body.get("keep_alive") is not None
            else state.default_keep_alive_ns()
        )
    except _BadRequest as exc:
        return _error(exc.status, exc.message)
    except ValueError as exc:
        return _error(400, str(exc))

    model_field: str = body.get("model") or ""
    if not model_field.strip():
        return _error(400, "model is required")
    model = state.lookup(model_field)
    if model is None:
        return _error(404, model_not_found_error(model_field))

    messages: list[Any] = []
    if kind == "generate":
        prompt: str = body.get("prompt") or ""
        load_only = prompt == ""
        explicit_unload = load_only and body.get("keep_alive") is not None and keep_alive == 0
    else:
        messages = body.get("messages") or []
        prompt = _chat_prompt(messages)
        load_only = not messages
        explicit_unload = load_only and body.get("keep_alive") is not None and keep_alive == 0

    if explicit_unload:
        state.unload(model)
        return _json(_load_reply(kind, model_field, "unload"))

    try:
        _check_think(body, model_field)
        num_predict = _num_predict(body.get("options"))
    except _BadRequest as exc:
        return _error(exc.status, exc.message)

    injected = state.take_error_fault()
    if injected is not None:
        return _error(*injected)

    if state.inflight >= state.config.max_queue:
        state.stats.rejected_queue_full += 1
        return _error(503, MAX_QUEUE_ERROR)

    state.inflight += 1
    acquired = False
    slots: asyncio.Semaphore | None = None
    try:
        await state.acquire(model, keep_alive)  # releases the model itself if the wait fails
        acquired = True
        model_slots = state.slots_for(model)
        if model_slots is not None:
            await model_slots.acquire()
            slots = model_slots
        loaded = time.perf_counter_ns()
        if load_only:
            return _json(_load_reply(kind, model_field, "load"))

        if kind == "generate":
            prompt_count = (
                _fake_token_count(body.get("system") or "")
                + _fake_token_count(prompt)
                + len(body.get("context") or [])
                + (0 if body.get("raw") else 10)
            )
        else:
            prompt_count = _chat_prompt_count(messages)
        n = num_predict if num_predict is not None else state.config.default_num_tokens
        done_reason = "length" if num_predict is not None else "stop"
        job = _Generation(
            request=request,
            state=state,
            kind=kind,
            model_field=model_field,
            prompt=prompt,
            num_tokens=n,
            source=_token_stream(model.name, prompt),
            done_reason=done_reason,
            stream=body.get("stream") is not False,
            start=start,
            loaded=loaded,
            prompt_count=max(prompt_count, 1),
            context=None
            if kind == "chat" or body.get("raw")
            else [*(int(i) for i in body.get("context") or []), *_fake_token_ids(prompt)],
        )
        return await job.run()
    finally:
        if slots is not None:
            slots.release()
        if acquired:
            state.release(model)
        state.inflight -= 1


def _load_reply(kind: str, model_field: str, reason: str) -> dict[str, Any]:
    if kind == "generate":
        return {
            "model": model_field,
            "created_at": _now(),
            "response": "",
            "done": True,
            "done_reason": reason,
        }
    return {
        "model": model_field,
        "created_at": _now(),
        "message": {"role": "assistant", "content": ""},
        "done_reason": reason,
        "done": True,
    }


@dataclass
class _Generation:
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
                "created_at": _now(),
                "response": text,
                "done": True,
                "done_reason": self.done_reason,
            }
            if self.context is not None:
                out["context"] = self.context + _fake_token_ids("".join(self.produced))
            return out | metrics
        return {
            "model": self.model_field,
            "created_at": _now(),
            "message": {"role": "assistant", "content": text},
            "done_reason": self.done_reason,
            "done": True,
        } | metrics

    async def run(self) -> web.StreamResponse:
        state = self.state
        fault = state.take_token_fault()
        state.stats.generations_started += 1
        state.stats.generations_by_path[self.request.path] += 1
        state.stats.generations_by_prompt[prompt_key(self.prompt)] += 1
        state.active += 1
        try:
            if self.stream:
                return await self._run_stream(fault)
            return await self._run_whole(fault)
        finally:
            state.active -= 1

    async def _tick(self, i: int, next_at: float) -> float:
        """Wait for token i's slot on a fixed schedule, so overhead never adds up."""
        delay = self.state.config.token_delay_s
        loop = asyncio.get_running_loop()
        if delay > 0:
            next_at = max(next_at + delay, loop.time() - delay)
            wait = next_at - loop.time()
            if wait > 0:
                await asyncio.sleep(wait)
        elif i % 64 == 63:
            await asyncio.sleep(0)
        return next_at

    def _interrupted(self) -> bool:
        return _closing(self.request) or self.state.shutting_down.is_set()

    async def _run_stream(self, fault: tuple[str, int, str] | None) -> web.StreamResponse:
        # Headers go out with the first line, as with gin: a fault or a gone client before the
        # first token still gets (or fails to get) a plain HTTP response.
        resp = web.StreamResponse(headers={"Content-Type": _NDJSON})
        resp.enable_chunked_encoding()
        head = '{"model":' + _dumps(self.model_field) + ',"created_at":"'
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
                next_at = await self._tick(i, next_at)
                if self._interrupted():
                    return self._gone(resp)
                if not resp.prepared:
                    await resp.prepare(self.request)
                token = next(self.source)
                await resp.write((head + _now() + mid + _dumps(token) + tail).encode())
                self.produced.append(token)
            if fault is not None and fault[1] >= self.num_tokens:
                return await self._fire(resp, fault)
            if not resp.prepared:
                await resp.prepare(self.request)
            await resp.write((_dumps(self._final("")) + "\n").encode())
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
            next_at = await self._tick(i, next_at)
            if self._interrupted():
                return self._gone(None)
            self.produced.append(next(self.source))
        if fault is not None and fault[1] >= self.num_tokens:
            return await self._fire(None, fault)
        self.state.stats.generations_completed += 1
        return _json(self._final("".join(self.produced)))

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
                return _error(500, message)
            with contextlib.suppress(ConnectionError):
                await resp.write((_dumps({"error": message}) + "\n").encode())
            return resp
        if action == "stall":
            while not self._interrupted():
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self.state.shutting_down.wait(), 0.05)
        return self._gone(resp)


# --------------------------------------------------------------------------------------------
# Model management endpoints
# --------------------------------------------------------------------------------------------


async def _tags(request: web.Request) -> web.Response:
    state = request.app[_STATE]
    models = sorted(state.models.values(), key=lambda m: m.modified_at_ns // 1_000_000_000, reverse=True)
    return _json(
        {
            "models": [
                {
                    "name": m.name,
                    "model": m.name,
                    "modified_at": _rfc3339(m.modified_at_ns),
                    "size": m.spec.size,
                    "digest": m.digest,
                    "details": m.details(),
                }
                for m in models
            ]
        }
    )


async def _ps(request: web.Request) -> web.Response:
    state = request.app[_STATE]
    now = time.time_ns()
    rows = []
    for m in state.loaded_models():
        expires = m.expires_at_ns if m.refcount == 0 else min(now + m.keep_alive_ns, _FOREVER_NS)
        rows.append((expires, m))
    rows.sort(key=lambda row: row[0] // 1_000_000_000, reverse=True)
    return _json(
        {
            "models": [
                {
                    "name": m.name,
                    "model": m.name,
                    "size": m.spec.size,
                    "digest": m.digest,
                    "details": m.details(),
                    "expires_at": _rfc3339(expires),
                    "size_vram": m.spec.size,
                }
                for expires, m in rows
            ]
        }
    )


async def _show(request: web.Request) -> web.Response:
    state = request.app[_STATE]
    try:
        body = await _bind_json(request, "ShowRequest", _MODEL_SCHEMA)
    except _BadRequest as exc:
        return _error(exc.status, exc.message)
    name = body.get("model") or body.get("name") or ""
    if not name:
        return _error(400, "model is required")
    model = state.lookup(name)
    if model is None:
        return _error(404, f"model '{name}' not found")
    family = model.spec.family
    return _json(
        {
            "modelfile": f'# Modelfile generated by "ollama show"\nFROM {model.name}\n'
            'TEMPLATE """{{ .Prompt }}"""\n',
            "parameters": 'stop                           "<|eot_id|>"',
            "template": "{{ .Prompt }}",
            "details": model.details(),
            "model_info": {
                "general.architecture": family,
                "general.file_type": 15,
                "general.parameter_count": int(model.spec.size / 0.6),
                f"{family}.context_length": 131072,
            },
            "modified_at": _rfc3339(model.modified_at_ns),
        }
    )


async def _delete(request: web.Request) -> web.Response:
    state = request.app[_STATE]
    try:
        body = await _bind_json(request, "DeleteRequest", _MODEL_SCHEMA)
    except _BadRequest as exc:
        return _error(exc.status, exc.message)
    name = body.get("model") or body.get("name") or ""
    if not _valid_model_name(name):
        return _error(400, f"name {_go_quote(name)} is invalid")
    model = state.lookup(name)
    if model is None:
        return _error(404, f"model '{name}' not found")
    state.unload(model)
    del state.models[model.name.lower()]
    return web.Response(status=200)


async def _pull(request: web.Request) -> web.StreamResponse:
    state = request.app[_STATE]
    try:
        body = await _bind_json(request, "PullRequest", _PULL_SCHEMA)
    except _BadRequest as exc:
        return _error(exc.status, exc.message)
    name = body.get("model") or body.get("name") or ""
    if not _valid_model_name(name):
        return _error(400, "invalid model name")
    injected = state.take_error_fault()
    if injected is not None:
        return _error(*injected)

    canonical = canonical_model_name(name)
    allowed = state.config.pullable_models
    found = allowed is None or canonical.lower() in {canonical_model_name(a).lower() for a in allowed}
    existing = state.lookup(canonical)
    target = existing or _Model(name=canonical, spec=_spec_for(canonical), modified_at_ns=0)

    lines: list[dict[str, Any]] = []
    for digest, total in target.layers():
        short = digest[7:19]
        steps = (0.0, 0.25, 0.5, 0.75, 1.0) if total > 1_000_000 else (0.0, 1.0)
        for frac in steps:
            line: dict[str, Any] = {"status": f"pulling {short}", "digest": digest, "total": total}
            if frac > 0:
                line["completed"] = int(total * frac)
            lines.append(line)
    lines += [{"status": "verifying sha256 digest"}, {"status": "writing manifest"}, {"status": "success"}]
    pause = state.config.pull_delay_s / len(lines)

    async def finish() -> None:
        state.add_model(canonical)
        state.stats.pulls_completed += 1

    if body.get("stream") is False:
        if not found:
            return _error(500, "pull model manifest: file does not exist")
        for _ in lines:
            if pause:
                await asyncio.sleep(pause)
            if _closing(request):
                return web.Response(status=499)
        await finish()
        return _json({"status": "success"})

    resp = web.StreamResponse(headers={"Content-Type": _NDJSON})
    resp.enable_chunked_encoding()
    await resp.prepare(request)
    try:
        await resp.write(b'{"status":"pulling manifest"}\n')
        if not found:
            await resp.write((_dumps({"error": "pull model manifest: file does not exist"}) + "\n").encode())
            return resp
        for line in lines:
            if pause:
                await asyncio.sleep(pause)
            if _closing(request):
                return resp
            if line["status"] == "success":
                await finish()
            await resp.write((_dumps(line) + "\n").encode())
    except ConnectionError:
        pass
    return resp


# --------------------------------------------------------------------------------------------
# Misc endpoints, control endpoints, app
# --------------------------------------------------------------------------------------------


async def _root(request: web.Request) -> web.Response:
    return web.Response(text="Ollama is running", content_type="text/plain", charset="utf-8")


async def _version(request: web.Request) -> web.Response:
    return _json({"version": request.app[_STATE].config.version})


async def _generate(request: web.Request) -> web.StreamResponse:
    return await _inference(request, "generate")


async def _chat(request: web.Request) -> web.StreamResponse:
    return await _inference(request, "chat")


async def _stats_get(request: web.Request) -> web.Response:
    state = request.app[_STATE]
    return _json(state.stats.to_json(state.inflight, state.active))


async def _stats_reset(request: web.Request) -> web.Response:
    state = request.app[_STATE]
    state.stats = _Stats()
    return _json(state.stats.to_json(state.inflight, state.active))


async def _faults_get(request: web.Request) -> web.Response:
    return _json(request.app[_STATE].control_view())


async def _faults_post(request: web.Request) -> web.Response:
    state = request.app[_STATE]
    raw = await request.read()
    try:
        update = _LiveUpdate.model_validate_json(raw or b"{}")
        state.apply_update(update)
    except ValidationError as exc:
        return _error(400, str(exc))
    return _json(state.control_view())


async def _faults_delete(request: web.Request) -> web.Response:
    state = request.app[_STATE]
    state.faults = FakeFaults()
    return _json(state.control_view())


@web.middleware
async def _gin_like(request: web.Request, handler: Any) -> web.StreamResponse:
    """Count requests per path; answer unknown routes the way gin does."""
    if not request.path.startswith(_CONTROL_PREFIX):
        request.app[_STATE].stats.requests[request.path] += 1
    try:
        response: web.StreamResponse = await handler(request)
    except web.HTTPNotFound:
        return web.Response(status=404, text="404 page not found", content_type="text/plain")
    except web.HTTPMethodNotAllowed:
        return web.Response(status=405, text="405 method not allowed", content_type="text/plain")
    return response


def build_app(config: FakeOllamaConfig | None = None) -> web.Application:
    """The stand-in as an aiohttp application (not started)."""
    state = FakeOllamaState(config or FakeOllamaConfig())
    app = web.Application(middlewares=[_gin_like], client_max_size=256 * 1024 * 1024)
    app[_STATE] = state

    async def on_shutdown(app: web.Application) -> None:
        app[_STATE].shutting_down.set()

    app.on_shutdown.append(on_shutdown)
    app.router.add_get("/", _root)
    app.router.add_get("/api/version", _version)
    app.router.add_get("/api/tags", _tags)
    app.router.add_get("/api/ps", _ps)
    app.router.add_post("/api/generate", _generate)
    app.router.add_post("/api/chat", _chat)
    app.router.add_post("/api/pull", _pull)
    app.router.add_post("/api/show", _show)
    app.router.add_delete("/api/delete", _delete)
    app.router.add_get("/__fake__/stats", _stats_get)
    app.router.add_delete("/__fake__/stats", _stats_reset)
    app.router.add_get("/__fake__/faults", _faults_get)
    app.router.add_post("/__fake__/faults", _faults_post)
    app.router.add_delete("/__fake__/faults", _faults_delete)
    return app


@dataclass
class FakeOllamaServer:
    """A running stand-in. ``port`` is the bound port (also when started with port 0)."""

    runner: web.AppRunner
    host: str
    port: int

    @property
    def app(self) -> web.Application:
        return self.runner.app

    @property
    def state(self) -> FakeOllamaState:
        return self.runner.app[_STATE]

    @property
    def url(self) -> str:
        host = self.host if self.host not in ("", "0.0.0.0", "::") else "127.0.0.1"
        if ":" in host:
            host = f"[{host}]"
        return f"http://{host}:{self.port}"

    async def close(self) -> None:
        await self.runner.cleanup()


async def start_fake_ollama(
    host: str = "127.0.0.1", port: int = 0, config: FakeOllamaConfig | None = None
) -> FakeOllamaServer:
    """Start the stand-in on the running event loop; port 0 picks a free port."""
    runner, bound = await start_site(build_app(config), host, port)
    return FakeOllamaServer(runner=runner, host=host, port=bound)


@contextlib.contextmanager
def serve_in_thread(
    config: FakeOllamaConfig | None = None, *, host: str = "127.0.0.1", port: int = 0
) -> Iterator[FakeOllamaServer]:
    """Run the stand-in on its own event loop in a daemon thread (for synchronous tests).

    Talk to it over HTTP (``server.url``, the ``/__fake__`` endpoints); its ``state`` belongs to
    the server thread.
    """
    with _serve_in_thread(
        lambda: start_fake_ollama(host, port, config), FakeOllamaServer.close, name="fake-ollama"
    ) as server:
        yield server


# --------------------------------------------------------------------------------------------
# Command line
# --------------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    """Run the stand-in in the foreground until SIGINT or SIGTERM."""
    parser = argparse.ArgumentParser(
        prog="fake-ollama", description="Offline stand-in for an Ollama server (REST API only)."
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=11434, help="0 picks a free port (printed on start)")
    parser.add_argument("--token-delay-ms", type=float, default=5.0)
    parser.add_argument("--load-delay-ms", type=float, default=200.0)
    parser.add_argument("--pull-delay-ms", type=float, default=50.0)
    parser.add_argument("--models", default=",".join(DEFAULT_MODELS), help="comma-separated, already pulled")
    parser.add_argument("--default-num-tokens", type=int, default=24)
    parser.add_argument("--max-queue", type=int, default=512, help="OLLAMA_MAX_QUEUE")
    parser.add_argument("--num-parallel", type=int, default=0, help="OLLAMA_NUM_PARALLEL; 0 = no limit")
    parser.add_argument("--keep-alive", default="5m", help="default keep_alive (Go duration or seconds)")
    args = parser.parse_args(argv)

    try:
        keep_alive = _parse_keep_alive(float(args.keep_alive) if _is_number(args.keep_alive) else args.keep_alive)
        config = FakeOllamaConfig(
            models=[m.strip() for m in args.models.split(",") if m.strip()],
            token_delay_s=args.token_delay_ms / 1000,
            load_delay_s=args.load_delay_ms / 1000,
            pull_delay_s=args.pull_delay_ms / 1000,
            default_num_tokens=args.default_num_tokens,
            max_queue=args.max_queue,
            num_parallel=args.num_parallel,
            default_keep_alive_s=-1.0 if keep_alive == _FOREVER_NS else keep_alive / 1e9,
        )
    except (ValueError, ValidationError) as exc:
        print(f"fake-ollama: {exc}", file=sys.stderr)
        return 2

    return serve_until_signalled(
        lambda: start_fake_ollama(args.host, args.port, config),
        FakeOllamaServer.close,
        name="fake-ollama",
        where=f"{args.host}:{args.port}",
        banner=lambda server: f"fake ollama listening on {server.url} (models: {', '.join(config.models)})",
    )


def _is_number(text: str) -> bool:
    try:
        return math.isfinite(float(text))
    except ValueError:
        return False
