"""reaper: called by Cloud Scheduler. Stops idle or leaked boxes, re-drives or expires stuck jobs."""

from __future__ import annotations

import flask
import functions_framework

from functions.edge import control_plane, handle_errors, json_response
from shared.boxes.reaping import reap
from shared.security.keys import verify_bearer
from shared.security.oidc import verify_oidc

__all__ = ["reaper"]


@functions_framework.http
@handle_errors
def reaper(request: flask.Request) -> flask.Response:
    cp = control_plane()
    s = cp.settings
    if s.scheduler_service_account:  # production: Cloud Scheduler's OIDC token
        verify_oidc(
            request.headers,
            audience=s.reaper_audience(),
            service_account=s.scheduler_service_account,
            certs_url=s.oidc_certs_url,
        )
    else:
        verify_bearer(request.headers, s.reaper_token, what="reaper token")
    return json_response(reap(cp))
