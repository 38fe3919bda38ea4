"""Control plane → agent calls: hand one attempt of a job over, cancel it. Signed, short timeouts."""

from __future__ import annotations

import json
import logging
from urllib.parse import urlsplit

import httpx

from shared.boxes.instances import cold_start_estimate_s
from shared.controlplane import ControlPlane
from shared.errors import AgentUnreachable, TryLater, ValidationFailed
from shared.jobs.events import AgentJob, AgentJobAccepted
from shared.models import Instance, Job
from shared.security.signing import agent_signer, job_token

__all__ = ["cancel_on_agent", "hand_over", "waiting_reason"]

log = logging.getLogger("gpuq.handover")

HANDOVER_TIMEOUT = httpx.Timeout(5.0, connect=2.0)
START_UP_CODES = ("starting_instance", "loading_model")
"""An agent refusing a job with one of these is still coming up; its message says what it does."""


def waiting_reason(code: str, message: object) -> str:
    """A refused job's ``status_reason``: the agent's code, with what a box coming up is doing
    (``loading_model: Downloading model.safetensors 43%``) when the agent said more than its phase."""
    if code in START_UP_CODES and isinstance(message, str) and message and message != f"agent is {code}":
        return f"{code}: {message}"[:120]
    return code or "agent_busy"


def _signed_post(cp: ControlPlane, instance_id: str, url: str, payload: bytes) -> httpx.Response:
    headers = agent_signer(cp.settings.agent_master_secret, instance_id, cp.nonces).sign(
        "POST", urlsplit(url).path, payload
    )
    headers["Content-Type"] = "application/json"
    gateway_auth = getattr(cp.provider, "agent_auth_headers", None)  # OVH apps behind OVH's own auth
    if gateway_auth is not None:
        headers.update(gateway_auth())
    return cp.http.post(url, content=payload, headers=headers, timeout=HANDOVER_TIMEOUT)


def hand_over(cp: ControlPlane, job: Job, instance: Instance) -> AgentJobAccepted:
    """Give the agent the job's current (reserved) attempt. Raises :class:`TryLater` while the box is not ready."""
    assert instance.agent_url
    attempt = job.attempt
    spec = AgentJob(
        job_id=job.id,
        attempt=attempt,
        model=job.model,
        prompt=job.prompt,
        messages=job.messages,
        input=job.input,
        options=job.options,
        timeout_s=job.timeout_s,
        report_url=f"{cp.settings.public_url.rstrip('/')}/v1/jobs/{job.id}/events",
        reports_url=f"{cp.settings.public_url.rstrip('/')}/v1/reports",
        report_token=job_token(cp.settings.job_token_secret, job.id, attempt),
        cold_start_s=cold_start_estimate_s(cp),
        price_per_hour=instance.price_per_hour or None,
    )
    snooze_s = cp.settings.snooze_s
    try:
        response = _signed_post(cp, instance.id, f"{instance.agent_url}/v1/jobs", spec.model_dump_json().encode())
    except httpx.ConnectError:
        raise TryLater("agent not listening yet", delay_s=snooze_s, reason="starting_instance") from None
    except httpx.HTTPError as exc:
        raise AgentUnreachable(f"agent did not answer: {type(exc).__name__}") from exc
    if response.status_code in (200, 202):
        return AgentJobAccepted.model_validate_json(response.content)
    try:
        error = json.loads(response.content).get("error", {})
    except ValueError:
        error = {}
    code = str(error.get("code", "")) if isinstance(error, dict) else ""
    if response.status_code in (429, 503):
        reason = waiting_reason(code, error.get("message") if isinstance(error, dict) else None)
        raise TryLater(f"agent not ready: {code}", delay_s=snooze_s, reason=reason)
    if response.status_code == 422:
        raise ValidationFailed(str(error.get("message", "agent refused the job")), code=code or "agent_refused")
    raise AgentUnreachable(f"agent answered {response.status_code} {code}")


def cancel_on_agent(cp: ControlPlane, job: Job) -> None:
    """Best effort: the agent also learns of the cancel from the answer to its next report."""
    instance = cp.run(cp.provider.get(job.instance_id)) if job.instance_id else None
    if instance is None or not instance.agent_url:
        return
    try:
        _signed_post(cp, instance.id, f"{instance.agent_url}/v1/jobs/{job.id}/cancel", b"{}")
    except httpx.HTTPError as exc:
        log.info(
            "cancel of job %s not delivered to the agent now (%s); it learns at its next report",
            job.id,
            type(exc).__name__,
        )
