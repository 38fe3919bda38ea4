"""The dashboard's HTTP handlers, served by the enqueue function: the same origin as the jobs API, so the
session cookie reaches the page's calls to ``/v1/...`` (the edge accepts it there: ``functions.edge.caller``).

Routes (``shared.jobs.routes``, audience ``browser``, left out of the OpenAPI document): ``GET /ui`` (the
dashboard, or the login page), ``POST /ui/login``, ``POST /ui/logout``, ``GET /ui/panels`` (the panels
again, as HTML fragments in JSON), ``GET /ui/static/{asset}``. The logic is ``shared.ui``.
"""

from __future__ import annotations

from collections.abc import Callable

import flask

from functions.edge import browser_session, caller, control_plane, json_response, rate_limiter, read_body, site_hosts
from shared.controlplane import ControlPlane
from shared.errors import NotFound, Unauthorized, UnsupportedMediaType
from shared.ui.assets import asset
from shared.ui.pages import SECURITY_HEADERS, dashboard_page, login_page, updated_at
from shared.ui.panels import panels
from shared.ui.revocation import revoke
from shared.ui.session import CSRF_FIELD, SESSION_COOKIE, check_origin, clear_cookie, open_session, session_cookie

__all__ = ["ENDPOINTS"]

FORM_MAX_BYTES = 4096
FORM = "application/x-www-form-urlencoded"


def _enabled() -> ControlPlane:
    cp = control_plane()
    if not cp.settings.ui_enabled:
        raise NotFound("the dashboard is off (GPUQ_UI_ENABLED=false)", code="no_route")
    return cp


def _html(body: str, status: int = 200, cookie: str | None = None) -> flask.Response:
    response = flask.Response(body, status=status, mimetype="text/html", headers=SECURITY_HEADERS)
    if cookie is not None:
        response.headers.add("Set-Cookie", cookie)
    return response


def _to_dashboard(cookie: str) -> flask.Response:
    """303 to ``/ui`` (a reload there never re-posts the form), setting or clearing the cookie."""
    response = flask.Response(status=303, headers={"Location": "/ui", **SECURITY_HEADERS})
    response.headers.add("Set-Cookie", cookie)
    return response


def _https(request: flask.Request) -> bool:
    """Whether the browser's request came over https (here, or at the proxy in front: Cloud Run's)."""
    forwarded = request.headers.get("X-Forwarded-Proto", "").split(",")[0].strip().lower()
    return request.is_secure or forwarded == "https"


def _form(request: flask.Request, field: str) -> str:
    if request.mimetype != FORM:
        raise UnsupportedMediaType(f"send the form as {FORM} (got {request.mimetype or 'no content type'})")
    read_body(request, FORM_MAX_BYTES)
    return str(request.form.get(field, ""))


def _page(request: flask.Request) -> flask.Response:
    cp = _enabled()
    if SESSION_COOKIE not in request.cookies:
        return _html(login_page(cp))
    try:
        session = browser_session(request)
    except Unauthorized as exc:  # expired, logged out, key revoked: log in again, without the stale cookie
        return _html(login_page(cp, exc.message), cookie=clear_cookie(secure=_https(request)))
    return _html(dashboard_page(cp, session))


def _login(request: flask.Request) -> flask.Response:
    cp = _enabled()
    check_origin(request.headers.get("Origin"), request.headers.get("Sec-Fetch-Site"), site_hosts(request))
    api_key = _form(request, "api_key")
    now, s = cp.clock.now(), cp.settings
    try:
        session = open_session(s.job_token_secret, s.api_key_map(), api_key, now=now, lifetime_s=s.ui_session_s)
    except Unauthorized:
        return _html(login_page(cp, "That API key is not valid."), 401)
    rate_limiter().check(session.name)
    return _to_dashboard(session_cookie(session, secure=_https(request), now=now))


def _logout(request: flask.Request) -> flask.Response:
    cp = _enabled()
    if SESSION_COOKIE in request.cookies:
        try:
            session = browser_session(request, csrf=_form(request, CSRF_FIELD))  # 403 without the form's token
        except Unauthorized:
            pass  # no valid session to end: clearing the cookie is all there is to do
        else:
            revoke(cp.store, session)
    return _to_dashboard(clear_cookie(secure=_https(request)))


def _panels(request: flask.Request) -> flask.Response:
    cp = _enabled()
    fresh = panels(cp, caller(request))
    return json_response(fresh | {"updated": updated_at(cp.clock.now())}, headers=SECURITY_HEADERS)


def _static(request: flask.Request, asset_name: str) -> flask.Response:
    _enabled()
    found = asset(asset_name)
    headers = {"ETag": found.etag, "Cache-Control": "no-cache", "X-Content-Type-Options": "nosniff"}
    if found.etag in request.headers.get("If-None-Match", ""):
        return flask.Response(status=304, headers=headers)
    return flask.Response(found.body, headers=headers, content_type=found.content_type)


ENDPOINTS: dict[str, Callable[..., flask.Response]] = {
    "uiPage": _page,
    "uiLogin": _login,
    "uiLogout": _logout,
    "uiPanels": _panels,
    "uiStatic": _static,
}
"""The dashboard's endpoints of the route table → their handlers."""
