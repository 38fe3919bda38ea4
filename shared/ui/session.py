"""The dashboard's login session and its CSRF defence, without HTTP: tokens in, a caller's name out.

A person logs in once with an API key. The key is not kept: the session cookie holds a signed token
``v1.<expires>.<nonce>.<key id>.<mac>``, where the MAC (HMAC-SHA256) covers the fields and the sha256 of
the key it was opened with. Any functions instance can check it (nothing is stored), and it stops working
when it expires, when its key is removed from ``GPUQ_API_KEYS`` or rotated, and when the signing secret
changes. The signing key is derived from ``GPUQ_JOB_TOKEN_SECRET`` under its own label, so it signs
nothing else.

The cookie is ``HttpOnly`` (no script reads it), ``SameSite=Strict`` (no other site's page sends it),
``Path=/`` (the page's calls to ``/v1/...`` carry it) and ``Secure`` when the request came over https.
A request that changes something must also carry the session's CSRF token (``X-CSRF-Token`` header, or
the ``csrf_token`` form field), derived from the session's nonce, and its ``Origin`` (or, without one,
its ``Sec-Fetch-Site``) must be this site: SameSite alone leaves sibling subdomains and old browsers.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from urllib.parse import urlsplit

from werkzeug.http import dump_cookie

from shared.errors import Forbidden, ServiceError, Unauthorized
from shared.security.keys import authenticate_api_key, hash_key

__all__ = [
    "CSRF_FIELD",
    "CSRF_HEADER",
    "SAFE_METHODS",
    "SESSION_COOKIE",
    "BrowserRequest",
    "Session",
    "authenticate_browser",
    "check_origin",
    "clear_cookie",
    "open_session",
    "read_session",
    "session_cookie",
    "session_key",
]

SESSION_COOKIE = "gpuq_session"
CSRF_HEADER = "X-CSRF-Token"
CSRF_FIELD = "csrf_token"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
_VERSION = "v1"
_LABEL = b"gpuq-ui-session-v1"


@dataclass(frozen=True)
class Session:
    """A valid dashboard session: the API key's ``name`` (the jobs' owner), the cookie's ``token``, the
    ``csrf`` token its page sends back, when it ends (epoch seconds), and its ``nonce`` (unique per login,
    not a secret: what a logout revokes)."""

    name: str
    token: str
    csrf: str
    expires_at: int
    nonce: str


@dataclass(frozen=True)
class BrowserRequest:
    """What the checks read of a request authenticated by the session cookie."""

    method: str
    token: str
    csrf: str | None = None  # the X-CSRF-Token header or csrf_token form field
    origin: str | None = None
    fetch_site: str | None = None  # Sec-Fetch-Site


def session_key(secret: str) -> bytes:
    """The signing key of sessions, derived from ``GPUQ_JOB_TOKEN_SECRET`` under the dashboard's label."""
    if not secret:
        raise ServiceError("the dashboard needs GPUQ_JOB_TOKEN_SECRET to sign its sessions", code="ui_not_configured")
    return hmac.new(secret.encode(), _LABEL, hashlib.sha256).digest()


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def _key_id(key_hash: str) -> str:
    """Names the key a session belongs to without revealing its hash (which production's settings hold)."""
    return hashlib.sha256(b"gpuq-ui-key-id:" + key_hash.encode()).hexdigest()[:16]


def _mac(key: bytes, body: str, key_hash: str) -> str:
    return _b64(hmac.new(key, f"{body}|{key_hash}".encode(), hashlib.sha256).digest())


def _csrf(key: bytes, nonce: str) -> str:
    return _b64(hmac.new(key, f"csrf|{nonce}".encode(), hashlib.sha256).digest())


def open_session(secret: str, keys: Mapping[str, str], api_key: str, *, now: float, lifetime_s: float) -> Session:
    """Log in with ``api_key`` (``keys``: sha256 hex → name). Raises :class:`Unauthorized` for a wrong key."""
    name = authenticate_api_key({"Authorization": f"Bearer {api_key.strip()}"}, keys)
    key = session_key(secret)
    key_hash = hash_key(api_key.strip())
    expires = int(now + lifetime_s)
    nonce = secrets.token_urlsafe(16)
    body = f"{_VERSION}.{expires}.{nonce}.{_key_id(key_hash)}"
    return Session(name, f"{body}.{_mac(key, body, key_hash)}", _csrf(key, nonce), expires, nonce)


def read_session(secret: str, keys: Mapping[str, str], token: str, *, now: float) -> Session:
    """The session a cookie's token stands for, or :class:`Unauthorized` (forged, expired, key revoked)."""
    parts = token.split(".") if len(token) <= 300 and token.isascii() else []
    if len(parts) != 5 or parts[0] != _VERSION or not parts[1].isdigit():
        raise Unauthorized("not a dashboard session: log in again", code="invalid_session")
    body, mac = ".".join(parts[:4]), parts[4]
    key = session_key(secret)
    name = ""
    for key_hash, key_name in keys.items():  # every entry is checked, in constant time each
        matches = hmac.compare_digest(_key_id(key_hash), parts[3])
        if hmac.compare_digest(_mac(key, body, key_hash), mac) and matches:
            name = key_name
    if not name:
        raise Unauthorized(
            "the dashboard session is not valid (or its key was revoked): log in again", code="invalid_session"
        )
    if int(parts[1]) <= now:
        raise Unauthorized("the dashboard session has expired: log in again", code="session_expired")
    return Session(name, token, _csrf(key, parts[2]), int(parts[1]), parts[2])


def check_origin(origin: str | None, fetch_site: str | None, hosts: set[str]) -> None:
    """Refuse (403) a state-changing request that a browser says came from another site.

    ``hosts`` are this site's ``host[:port]`` (the request's Host, the public URL's). Browsers send
    ``Origin`` on every POST; without it, ``Sec-Fetch-Site`` must not say cross-site.
    """
    if origin is not None:
        if urlsplit(origin).netloc.lower() not in {h.lower() for h in hosts}:
            raise Forbidden(f"request from another origin ({origin[:100]}) refused", code="cross_origin")
    elif fetch_site not in (None, "same-origin", "none"):
        raise Forbidden(f"request from another site (Sec-Fetch-Site: {fetch_site[:40]}) refused", code="cross_origin")


def authenticate_browser(
    secret: str, keys: Mapping[str, str], request: BrowserRequest, *, now: float, hosts: set[str]
) -> Session:
    """The session of a cookie-authenticated request. A request other than GET/HEAD/OPTIONS must also carry
    the session's CSRF token and come from this site (``hosts``), else :class:`Forbidden`."""
    session = read_session(secret, keys, request.token, now=now)
    if request.method.upper() not in SAFE_METHODS:
        if not request.csrf or not hmac.compare_digest(request.csrf.encode(), session.csrf.encode()):
            raise Forbidden(f"missing or wrong CSRF token: send the page's token as {CSRF_HEADER}", code="csrf_failed")
        check_origin(request.origin, request.fetch_site, hosts)
    return session


def session_cookie(session: Session, *, secure: bool, now: float) -> str:
    """The ``Set-Cookie`` value that logs the browser in until the session ends."""
    return dump_cookie(
        SESSION_COOKIE,
        session.token,
        max_age=max(0, round(session.expires_at - now)),
        path="/",
        secure=secure,
        httponly=True,
        samesite="Strict",
    )


def clear_cookie(*, secure: bool) -> str:
    """The ``Set-Cookie`` value that logs the browser out (the same attributes, expired)."""
    return dump_cookie(
        SESSION_COOKIE, "", max_age=0, expires=0, path="/", secure=secure, httponly=True, samesite="Strict"
    )
