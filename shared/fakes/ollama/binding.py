"""Request bodies decoded as gin's ``ShouldBindJSON`` does, with the texts of Go's ``encoding/json``
errors (syntax errors, fields of the wrong JSON type), checked against one schema per request struct."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Final

from aiohttp import web

__all__ = ["CHAT_SCHEMA", "GENERATE_SCHEMA", "MODEL_SCHEMA", "PULL_SCHEMA", "BadRequest", "Schema", "bind_json"]


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


Schema = dict[str, str]
GENERATE_SCHEMA: Final[Schema] = {
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
CHAT_SCHEMA: Final[Schema] = {
    "model": "string",
    "messages": "messages",
    "stream": "bool",
    "options": "map",
    "keep_alive": "duration",
    "tools": "array",
}
PULL_SCHEMA: Final[Schema] = {
    "model": "string",
    "name": "string",
    "insecure": "bool",
    "stream": "bool",
    "username": "string",
    "password": "string",
}
MODEL_SCHEMA: Final[Schema] = {"model": "string", "name": "string"}


@dataclass(frozen=True)
class _Field:
    """A field of a request struct, named the way Go's "cannot unmarshal" errors name it."""

    struct: str
    key: str

    def bad(self, value: Any, go_type: str, what: str | None = None, sub: str = "") -> str:
        path = f"{self.key}.{sub}" if sub else self.key
        what = what or _json_kind(value)
        return f"json: cannot unmarshal {what} into Go struct field {self.struct}.{path} of type {go_type}"


_Check = Callable[[_Field, Any], str | None]


def _plain(python_type: type, go_type: str) -> _Check:
    """A field that must be one JSON kind (string, bool, object, array)."""

    def check(field: _Field, value: Any) -> str | None:
        return None if isinstance(value, python_type) else field.bad(value, go_type)

    return check


def _ints(field: _Field, value: Any) -> str | None:
    if not isinstance(value, list):
        return field.bad(value, "[]int")
    for item in value:
        if isinstance(item, bool) or not isinstance(item, (int, float)):
            return field.bad(item, "int")
        if isinstance(item, float) and not item.is_integer():
            return field.bad(item, "int", f"number {item}")
    return None


def _images(field: _Field, value: Any) -> str | None:
    if not isinstance(value, list):
        return field.bad(value, "[]api.ImageData")
    for item in value:
        if not isinstance(item, str):
            return field.bad(item, "api.ImageData")
    return None


def _message(field: _Field, item: Any) -> str | None:
    if item is None:
        return None
    if not isinstance(item, dict):
        return field.bad(item, "api.Message")
    for sub in ("role", "content"):
        if item.get(sub) is not None and not isinstance(item[sub], str):
            return field.bad(item[sub], "string", sub=sub)
    return None


def _messages(field: _Field, value: Any) -> str | None:
    if not isinstance(value, list):
        return field.bad(value, "[]api.Message")
    for item in value:
        problem = _message(field, item)
        if problem is not None:
            return problem
    return None


# One check per schema kind; "duration" (keep_alive) is checked when it is parsed.
_CHECKS: Final[dict[str, _Check]] = {
    "string": _plain(str, "string"),
    "bool": _plain(bool, "bool"),
    "map": _plain(dict, "map[string]interface {}"),
    "array": _plain(list, "[]api.Tool"),
    "[]int": _ints,
    "[]string": _images,
    "messages": _messages,
}


def _type_error(struct: str, schema: Schema, body: dict[str, Any]) -> str | None:
    """The first error Go's decoder would report for fields of the wrong JSON type."""
    for key, value in body.items():
        check = _CHECKS.get(schema.get(key, ""))
        if check is None or value is None:
            continue
        problem = check(_Field(struct, key), value)
        if problem is not None:
            return problem
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


class BadRequest(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


_JSON_WS: Final = " \t\r\n"
_decoder: Final = json.JSONDecoder()


async def bind_json(request: web.Request, struct: str, schema: Schema) -> dict[str, Any]:
    """gin's ShouldBindJSON: first JSON value of the body, Go's error texts on failure."""
    raw = await request.read()
    doc = raw.decode("utf-8", errors="replace")
    start = len(doc) - len(doc.lstrip(_JSON_WS))
    if start == len(doc):
        raise BadRequest(400, "missing request body")
    try:
        obj, _ = _decoder.raw_decode(doc, start)
    except json.JSONDecodeError as exc:
        raise BadRequest(400, _go_syntax_error(doc, exc)) from None
    if obj is None:
        return {}
    if not isinstance(obj, dict):
        raise BadRequest(400, f"json: cannot unmarshal {_json_kind(obj)} into Go value of type api.{struct}")
    problem = _type_error(struct, schema, obj)
    if problem is not None:
        raise BadRequest(400, problem)
    return obj
