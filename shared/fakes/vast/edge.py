"""Vast's edge, before any endpoint runs: calls and statuses counted per endpoint, rate limits (429,
sometimes plain text), and the armed 429 and 5xx bursts."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable

from aiohttp import web

from shared.fakes.vast.auth import token_of
from shared.fakes.vast.endpoints import ENDPOINT_OF
from shared.fakes.vast.state import STATE, FakeVastState
from shared.fakes.vast.wire import error_response

__all__ = ["vast_edge"]


def _endpoint(request: web.Request) -> str | None:
    return ENDPOINT_OF.get(request.match_info.handler)


@web.middleware
async def vast_edge(
    request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
) -> web.StreamResponse:
    endpoint = _endpoint(request)
    if endpoint is None:
        return await handler(request)
    state = request.app[STATE]
    state.calls[endpoint] += 1
    response = _limited(state, request, endpoint) or await handler(request)
    state.statuses[endpoint][str(response.status)] += 1
    return response


def _limited(state: FakeVastState, request: web.Request, endpoint: str) -> web.Response | None:
    """429 / 5xx faults and rate limits, decided before anything runs (as Vast's edge does)."""
    faults = state.config.faults
    if faults.rate_limit_burst and (not faults.rate_limit_endpoints or endpoint in faults.rate_limit_endpoints):
        faults.rate_limit_burst -= 1
        return _too_many(state, endpoint, 0.0)
    interval = state.config.rate_limits_s.get(endpoint, 0.0)
    if interval > 0:
        key = (token_of(request) or (request.remote or ""), endpoint)
        now = time.monotonic()
        last = state.last_call.get(key)
        if last is not None and now - last < interval:
            return _too_many(state, endpoint, interval)
        state.last_call[key] = now
    if faults.error_burst and (not faults.error_endpoints or endpoint in faults.error_endpoints):
        faults.error_burst -= 1
        status = faults.error_status
        return web.Response(
            text=f"<html><body><h1>{status} Server Error</h1></body></html>", status=status, content_type="text/html"
        )
    return None


def _too_many(state: FakeVastState, endpoint: str, interval: float) -> web.Response:
    state.rate_limited += 1
    message = "API requests too frequent"
    if interval:
        message += f": endpoint threshold={interval:g}s"
    if state.rate_limited % state.config.rate_limit_text_every == 0:
        return web.Response(text=message, status=429, content_type="text/plain")
    return error_response(429, "rate_limited", message)
