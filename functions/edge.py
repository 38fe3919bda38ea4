"""The HTTP edge shared by the four functions: body limits, JSON parsing, errors → JSON + status.

Only this layer picks HTTP statuses. Every response body of an error is
``{"error": {"code", "message"}}``; an unexpected exception is logged with its traceback and
answered 500 without detail.
"""

from __future__ import annotations

import functools
import gc
import json
import logging
import threading
from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit

import flask
import functions_framework
from werkzeug.exceptions import HTTPException, RequestEntityTooLarge

from shared.assembly import build_control_plane
from shared.controlplane import ControlPlane
from shared.errors import (
    GpuqError,
    InvalidRequest,
    MethodNotAllowed,
    PayloadTooLarge,
    RateLimited,
    Unauthorized,
    UnsupportedMediaType,
    error_type,
)
from shared.observability.logs import configure_logging
from shared.security.headers import printable
from shared.security.keys import authenticate_api_key, bearer
from shared.security.ratelimit import RateLimiter
from shared.settings import ControlPlaneSettings, LogSettings
from shared.ui.revocation import is_revoked
from shared.ui.session import CSRF_HEADER, SESSION_COOKIE, BrowserRequest, Session, authenticate_browser

__all__ = [
    "browser_session",
    "caller",
    "control_plane",
    "handle_errors",
    "json_response",
    "rate_limiter",
    "read_body",
    "read_json",
    "site_hosts",
]

log = logging.getLogger("gpuq.edge")

Handler = Callable[[flask.Request], flask.Response]

_cp: ControlPlane | None = None
_cp_lock = threading.Lock()


@functools.cache
def rate_limiter() -> RateLimiter:
    cp = control_plane()
    return RateLimiter(cp.settings.rate_limit_per_min, store=cp.store)


@functools.cache
def _api_keys() -> dict[str, str]:
    """sha256 hex → key name, parsed once: settings do not change while the process runs."""
    return control_plane().settings.api_key_map()


def caller(request: flask.Request) -> str:
    """Authenticate the jobs API caller and take one token of its rate limit. Returns its name.

    By API key (``Authorization: Bearer``); without one, by the dashboard's session cookie
    (:func:`browser_session`: a state-changing request then needs the session's CSRF token too)."""
    if not bearer(request.headers) and SESSION_COOKIE in request.cookies and control_plane().settings.ui_enabled:
        name = browser_session(request).name
    else:
        name = authenticate_api_key(request.headers, _api_keys())
    rate_limiter().check(name)
    return name


def site_hosts(request: flask.Request) -> set[str]:
    """This site's ``host[:port]`` as a browser's ``Origin`` names it: the request's Host, the public URL's."""
    return {request.host, urlsplit(control_plane().settings.public_url).netloc}


def browser_session(request: flask.Request, *, csrf: str | None = None) -> Session:
    """The dashboard session of a request carrying its cookie: 401 when none is valid (forged, expired,
    logged out, key revoked); 403 when a state-changing request lacks the session's CSRF token (the
    ``X-CSRF-Token`` header, or ``csrf`` from a form) or a browser says it came from another site."""
    cp = control_plane()
    seen = BrowserRequest(
        method=request.method,
        token=request.cookies.get(SESSION_COOKIE, ""),
        csrf=csrf if csrf is not None else request.headers.get(CSRF_HEADER),
        origin=request.headers.get("Origin"),
        fetch_site=request.headers.get("Sec-Fetch-Site"),
    )
    session = authenticate_browser(
        cp.settings.job_token_secret, _api_keys(), seen, now=cp.clock.now(), hosts=site_hosts(request)
    )
    if is_revoked(cp.store, session):
        raise Unauthorized("this dashboard session was logged out: log in again", code="session_ended")
    return session


def control_plane() -> ControlPlane:
    """The process's control plane, built on first use from ``GPUQ_*`` settings."""
    global _cp
    if _cp is not None:  # built once; every request asks for it
        return _cp
    with _cp_lock:
        if _cp is None:
            configure_logging(LogSettings(), "functions")  # text, or JSON lines (GPUQ_LOG_FORMAT)
            _cp = build_control_plane(ControlPlaneSettings())  # published whole: the fast path reads it unlocked
            # Everything built so far (modules, settings, pydantic schemas, clients) lives as long as the
            # process: out of the collector's sight, a full collection no longer walks it mid-request.
            gc.freeze()
        return _cp


def json_response(body: Any, status: int = 200, headers: dict[str, str] | None = None) -> flask.Response:
    return flask.Response(
        json.dumps(body, separators=(",", ":")), status=status, headers=headers, mimetype="application/json"
    )


def read_body(request: flask.Request, max_bytes: int) -> bytes:
    """The raw body, refused with 413 past ``max_bytes`` (checked before reading, chunked bodies too)."""
    length = request.content_length
    if length is not None and length > max_bytes:
        raise PayloadTooLarge(f"body is {length} bytes; the limit is {max_bytes}")
    request.max_content_length = max_bytes
    try:
        return request.get_data(cache=True)
    except RequestEntityTooLarge:
        raise PayloadTooLarge(f"body is over the {max_bytes}-byte limit") from None


def read_json(request: flask.Request, max_bytes: int) -> Any:
    """Parse a JSON body, enforcing type and size before parsing."""
    if request.mimetype != "application/json":
        raise UnsupportedMediaType(f"send the body as application/json (got {request.mimetype or 'no content type'})")
    raw = read_body(request, max_bytes)
    try:
        value = json.loads(raw, parse_constant=_refuse_constant)
    except (ValueError, UnicodeDecodeError) as exc:
        raise InvalidRequest(f"body is not valid JSON: {exc}", code="invalid_json") from None
    except RecursionError:
        raise InvalidRequest("body is nested too deeply", code="invalid_json") from None
    _check_shape(value)
    return value


MAX_DEPTH = 32
MAX_NODES = 100_000


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def _check_shape(value: Any) -> None:
    """Refuse JSON nested deeper than MAX_DEPTH or with more than MAX_NODES values (cheap, iterative)."""
    stack = [(value, 1)]
    nodes = 0
    while stack:
        item, depth = stack.pop()
        nodes += 1
        if depth > MAX_DEPTH:
            raise InvalidRequest(f"body is nested deeper than {MAX_DEPTH} levels", code="invalid_json")
        if nodes > MAX_NODES:
            raise InvalidRequest(f"body has more than {MAX_NODES} values", code="invalid_json")
        if isinstance(item, dict):
            stack.extend((v, depth + 1) for v in item.values())
        elif isinstance(item, list):
            stack.extend((v, depth + 1) for v in item)


def _error_response(exc: GpuqError) -> flask.Response:
    headers = {}
    if isinstance(exc, RateLimited):
        headers["Retry-After"] = str(max(1, round(exc.retry_after_s)))
    if isinstance(exc, MethodNotAllowed):
        headers["Allow"] = ", ".join(exc.allow)
    return json_response(exc.to_api_body(), exc.status, headers)


def _framework_error(exc: HTTPException) -> flask.Response:
    """Errors raised before our function runs (a path Flask cannot route, a malformed request) as JSON too."""
    code = (exc.name or "error").lower().replace(" ", "_")
    status = exc.code or 400
    body = {"code": code, "message": exc.description or exc.name, "type": error_type(status), "param": None}
    return json_response({"error": body}, status)


# functions-framework exposes its Flask app's errorhandler while it imports the function's module.
functions_framework.errorhandler(HTTPException)(_framework_error)


def handle_errors(fn: Handler) -> Handler:
    @functools.wraps(fn)
    def wrapper(request: flask.Request) -> flask.Response:
        try:
            return fn(request)
        except GpuqError as exc:
            level = logging.WARNING if exc.status >= 500 or request.path.startswith("/dispatch") else logging.INFO
            log.log(
                level,
                "%s %s → %d %s: %s",
                request.method,
                printable(request.path),
                exc.status,
                exc.code,
                printable(exc.message),
            )
            return _error_response(exc)
        except Exception:
            log.exception("%s %s failed", request.method, printable(request.path))
            body = {"code": "internal", "message": "internal error", "type": "server_error", "param": None}
            return json_response({"error": body}, 500)

    return wrapper
