"""reaper: called by Cloud Scheduler. Stops idle or leaked boxes, re-drives or expires stuck jobs."""

from __future__ import annotations

import flask
import functions_framework

from functions.edge import control_plane, handle_errors, json_response
from shared.reaping import reap
from shared.security import verify_bearer

__all__ = ["reaper"]


@functions_framework.http
@handle_errors
def reaper(request: flask.Request) -> flask.Response:
    cp = control_plane()
    verify_bearer(request.headers, cp.settings.reaper_token, what="reaper token")
    return json_response(reap(cp))
