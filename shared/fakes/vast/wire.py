"""JSON in and out as Vast's API speaks it: exactly ``application/json`` answers, the
``{"success": false, "error", "msg"}`` error shape, and request bodies that must be JSON objects."""

from __future__ import annotations

import json
from typing import Any, Final

from aiohttp import web

__all__ = ["error_response", "json_body", "json_response"]


_JSON: Final = "application/json"


def json_response(data: Any, status: int = 200) -> web.Response:
    # Exactly "application/json" (no charset): `vastai search offers` refuses anything else.
    return web.Response(body=json.dumps(data).encode(), status=status, headers={"Content-Type": _JSON})


def error_response(status: int, error: str, msg: str) -> web.Response:
    return json_response({"success": False, "error": error, "msg": msg}, status)


async def json_body(request: web.Request) -> dict[str, Any] | web.Response:
    try:
        body = await request.json() if request.can_read_body else {}
    except ValueError:
        return error_response(400, "invalid_args", "request body is not JSON")
    return body if isinstance(body, dict) else error_response(400, "invalid_args", "request body must be an object")
