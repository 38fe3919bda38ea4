"""The four functions in one local process, routed by path (``gpuq dev`` runs this).

``/v1/...``, ``/enqueue``, ``/metrics`` and ``/ui/...`` → enqueue, ``/trigger`` → trigger, ``/dispatch`` → dispatch,
``/reaper`` → reaper. No redirects (the emulator counts a 308 as a failure).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import cast

import flask
import functions_framework

from functions.dispatch import dispatch
from functions.edge import control_plane, json_response
from functions.enqueue import enqueue
from functions.reaper import reaper
from functions.trigger import trigger

__all__ = ["gpuq"]

Handler = Callable[[flask.Request], flask.Response]
# functions_framework.http returns the function itself; its annotations do not say so.
_ENQUEUE = cast(Handler, enqueue)
_ROUTES = cast(dict[str, Handler], {"trigger": trigger, "dispatch": dispatch, "reaper": reaper})


@functions_framework.http
def gpuq(request: flask.Request) -> flask.Response:
    first = request.path.strip("/").split("/", 1)[0]
    if first in ("v1", "enqueue", "metrics", "ui"):
        return _ENQUEUE(request)
    if first == "healthz":
        control_plane()  # settings parse and the store opens, or this answers 500
        return json_response({"ok": True})
    handler = _ROUTES.get(first)
    if handler is None:
        return json_response({"error": {"code": "no_route", "message": f"no route {request.path}"}}, 404)
    return handler(request)
