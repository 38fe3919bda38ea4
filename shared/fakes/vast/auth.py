"""Who is calling: the account key, or a container key that reaches only its own instance; the key is
read from ``Authorization: Bearer`` or ``?api_key=``, as the CLI sends it."""

from __future__ import annotations

import secrets
from dataclasses import dataclass

from aiohttp import web

from shared.fakes.vast.state import STATE
from shared.fakes.vast.wire import error_response

__all__ = ["Caller", "account_only", "auth", "token_of"]


@dataclass(frozen=True)
class Caller:
    token: str
    instance_id: int | None  # None: the account key


def token_of(request: web.Request) -> str:
    header = request.headers.get("Authorization", "")
    if header.startswith("Bearer "):
        return header[7:].strip()
    return request.query.get("api_key", "")


def auth(request: web.Request, *, instance_id: int | None = None) -> Caller | web.Response:
    """The caller, or the error Vast answers. Container keys reach only their own instance."""
    state = request.app[STATE]
    config = state.config
    if config.faults.auth_error_status is not None:
        return error_response(config.faults.auth_error_status, "auth_error", "Invalid user key")
    token = token_of(request)
    if token and secrets.compare_digest(token, config.api_key):
        return Caller(token, None)
    owner = state.container_keys.get(token) if token else None
    if owner is not None:
        if instance_id is None or instance_id != owner:
            return error_response(401, "auth_error", "this API key may only manage its own instance")
        return Caller(token, owner)
    return error_response(config.bad_key_status, "auth_error", "Invalid user key")


def account_only(request: web.Request) -> web.Response | None:
    token = token_of(request)
    config = request.app[STATE].config
    if token and secrets.compare_digest(token, config.api_key):
        return None
    return error_response(401, "auth_error", "the test hooks need the account key")
