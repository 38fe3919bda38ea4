"""Responses as the Go server sends them (JSON bodies, ``{"error": ...}``), and whether the client is
still there to receive one."""

from __future__ import annotations

from typing import Any, Final

from aiohttp import web

from shared.fakes.ollama.goformat import dumps

__all__ = ["NDJSON", "closing", "error_response", "json_response"]


NDJSON: Final = "application/x-ndjson"


def error_response(status: int, message: str) -> web.Response:
    return web.Response(status=status, text=dumps({"error": message}), content_type="application/json", charset="utf-8")


def json_response(payload: Any, status: int = 200) -> web.Response:
    return web.Response(status=status, text=dumps(payload), content_type="application/json", charset="utf-8")


def closing(request: web.Request) -> bool:
    transport = request.transport
    return transport is None or transport.is_closing()
