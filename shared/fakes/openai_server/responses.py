"""Answers as the OpenAI-compatible servers send them: compact JSON, the ``{"error": {...}}`` shape, SSE events."""

from __future__ import annotations

import json
from typing import Any, Final

from aiohttp import web

__all__ = [
    "EVENT_STREAM",
    "LOADING",
    "dumps",
    "error_body",
    "error_response",
    "json_response",
    "loading_response",
    "sse",
]

EVENT_STREAM: Final = "text/event-stream"

_TYPES: Final = {
    400: "BadRequestError",
    401: "AuthenticationError",
    404: "NotFoundError",
    429: "RateLimitError",
    500: "InternalServerError",
    503: "ServiceUnavailableError",
}
LOADING: Final = {"error": {"code": 503, "message": "Loading model", "type": "unavailable_error"}}
"""llama.cpp's answer while its model loads (``/health`` and the inference routes)."""


def dumps(obj: Any) -> str:
    """Compact JSON, UTF-8 kept as it is (pydantic's ``model_dump_json``, as vLLM writes it)."""
    return json.dumps(obj, ensure_ascii=False, separators=(",", ":"))


def error_body(status: int, message: str, param: str | None = None) -> dict[str, Any]:
    """vLLM's error shape: ``{"error": {"message", "type", "param", "code"}}``, ``code`` the HTTP status."""
    return {
        "error": {"message": message, "type": _TYPES.get(status, "InternalServerError"), "param": param, "code": status}
    }


def error_response(status: int, message: str, param: str | None = None) -> web.Response:
    return json_response(error_body(status, message, param), status=status)


def json_response(payload: Any, status: int = 200) -> web.Response:
    return web.Response(status=status, text=dumps(payload), content_type="application/json")


def loading_response() -> web.Response:
    return json_response(LOADING, status=503)


def sse(payload: str) -> bytes:
    """One Server-Sent Event: ``data: <payload>`` and the blank line that ends it."""
    return b"data: " + payload.encode() + b"\n\n"
