"""The dashboard's two pages, rendered on the server: the login form and the dashboard itself (its panels
filled in, so it shows the state before its script first refreshes). Neither page ever holds the API key;
the dashboard holds the session's CSRF token, which its script and its logout form send back."""

from __future__ import annotations

import html
from datetime import UTC, datetime

from shared.controlplane import ControlPlane
from shared.ui.assets import template
from shared.ui.panels import duration, panels
from shared.ui.session import Session

__all__ = ["SECURITY_HEADERS", "dashboard_page", "login_page", "updated_at"]

SECURITY_HEADERS = {
    # Only this site's own files run or load: no inline script or style, no framing, forms post only here.
    "Content-Security-Policy": (
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; "
        "form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    # Not no-referrer: with it, browsers send "Origin: null" on form posts, which the Origin check must refuse.
    "Referrer-Policy": "same-origin",
    "Cache-Control": "no-store",
}
"""Headers of every page and panel answer."""


def updated_at(now: float) -> str:
    return datetime.fromtimestamp(now, UTC).strftime("%H:%M:%S UTC")


def login_page(cp: ControlPlane, error: str | None = None) -> str:
    """The login form, with ``error`` (a wrong key, an expired session) above it."""
    shown = f'<p class="error" role="alert">{html.escape(error)}</p>' if error else ""
    return template("login.html").substitute(error=shown, lifetime=duration(cp.settings.ui_session_s))


def dashboard_page(cp: ControlPlane, session: Session) -> str:
    """The dashboard for the session's key: its jobs, the fleet, the cost; recent events come from its script."""
    fragments = panels(cp, session.name)
    return template("dashboard.html").substitute(
        csrf=html.escape(session.csrf),
        refresh_ms=str(int(cp.settings.ui_refresh_s * 1000)),
        name=html.escape(session.name),
        updated=updated_at(cp.clock.now()),
        **fragments,
    )
