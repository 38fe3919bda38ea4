"""trigger: an external ping (``Authorization: Bearer <trigger token>``) or an agent's signed
"ready" or "failed" announcement or "drain" request. Starts the boxes waiting work needs; once an agent
is ready, runs waiting jobs now; an idle agent asking to stop is drained or told to stay up; a box whose
model server cannot come up is stopped and another started."""

from __future__ import annotations

import flask
import functions_framework

from functions.edge import control_plane, handle_errors, json_response, rate_limiter, read_body, read_json
from shared.boxes.triggering import box_failed, drain
from shared.boxes.triggering import trigger as run_trigger
from shared.errors import MethodNotAllowed, Unauthorized, ValidationFailed
from shared.security.keys import verify_bearer
from shared.security.signing import agent_signer

__all__ = ["trigger"]


@functions_framework.http
@handle_errors
def trigger(request: flask.Request) -> flask.Response:
    if request.method != "POST":
        raise MethodNotAllowed(f"{request.method} is not allowed on {request.path}; use POST", allow=["POST"])
    cp = control_plane()
    if "X-Gpuq-Signature" in request.headers:
        # An agent announcing it is ready: signed with that box's own secret, so it can speak only for itself.
        body = read_json(request, 4096)
        instance_id = body.get("instance_id") if isinstance(body, dict) else None
        if not isinstance(instance_id, str) or not instance_id or len(instance_id) > 128:
            raise ValidationFailed("instance_id: required")
        agent_signer(cp.settings.agent_master_secret, instance_id, cp.nonces).verify(
            "POST", request.path, request.headers, read_body(request, 4096)
        )
        if body.get("event") == "drain":
            answer = drain(cp, instance_id)
            return json_response({"drain": answer.granted, "reason": answer.reason})
        if body.get("event") == "failed":
            reason = body.get("reason")
            return json_response(box_failed(cp, instance_id, reason if isinstance(reason, str) else "unknown"))
        phases = {
            k: float(v)
            for k in ("agent_up_s", "model_loaded_s")
            if isinstance(v := body.get(k), int | float) and 0 <= v < 86400
        }
        return json_response(run_trigger(cp, ready_instance=instance_id, phases=phases))
    if not request.headers.get("Authorization"):
        raise Unauthorized("missing trigger token: send 'Authorization: Bearer <token>'")
    verify_bearer(request.headers, cp.settings.trigger_token, what="trigger token")
    rate_limiter().check("trigger")
    return json_response(run_trigger(cp))
