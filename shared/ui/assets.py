"""The dashboard's files, shipped as package data of ``shared.ui``: the page templates (``templates/``) and
the static assets its page loads (``static/``: one script, one style sheet, the idle-policy plot, an icon).

The plot is ``docs/policies.png`` as ``bench/plot_policies.py`` renders it from the simulator on the
shared trace; the runtime never imports the simulator, so it serves the pre-rendered copy.
"""

from __future__ import annotations

import functools
import hashlib
from dataclasses import dataclass
from importlib import resources
from string import Template

from shared.errors import NotFound

__all__ = ["ASSETS", "Asset", "asset", "template"]

ASSETS: dict[str, str] = {
    "dashboard.js": "text/javascript; charset=utf-8",
    "dashboard.css": "text/css; charset=utf-8",
    "policies.png": "image/png",
    "favicon.svg": "image/svg+xml",
}
"""Every file ``GET /ui/static/{name}`` serves, and its content type."""


@dataclass(frozen=True)
class Asset:
    body: bytes
    content_type: str
    etag: str  # quoted, as the ETag header carries it


def _files() -> resources.abc.Traversable:
    return resources.files("shared.ui")


@functools.cache
def asset(name: str) -> Asset:
    """A static file by name, read once; :class:`NotFound` for any name not in :data:`ASSETS`."""
    if name not in ASSETS:
        raise NotFound(f"no dashboard file {name[:80]!r}", code="no_route")
    body = _files().joinpath("static", name).read_bytes()
    return Asset(body, ASSETS[name], '"' + hashlib.sha256(body).hexdigest()[:20] + '"')


@functools.cache
def template(name: str) -> Template:
    """A page template (``$name`` placeholders, filled with already-escaped HTML)."""
    return Template(_files().joinpath("templates", name).read_text(encoding="utf-8"))
