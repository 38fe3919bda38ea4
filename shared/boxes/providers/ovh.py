"""OVHcloud AI Deploy as a compute provider, driven by the ``ovhai`` CLI.

An AI Deploy *app* is the box: a container (the gpuq agent image) with GPUs, created once with
``ovhai app run`` (:meth:`OvhProvider.create`) and then started and stopped on demand with
``ovhai app start`` / ``ovhai app stop``. Billing runs while the app is ``SCALING`` or ``RUNNING``.
Every call parses ``-o json`` output; the app JSON looks like::

    {"id": "<uuid>", "createdAt": "...", "updatedAt": "...", "user": "...",
     "spec": {"name", "image", "region", "resources": {"gpu", "gpuModel", "flavor", "cpu", ...},
              "volumes": [...], "unsecureHttp", "defaultHttpPort", "labels": {...}, "envVars": [...]},
     "status": {"state": "QUEUED|INITIALIZING|SCALING|RUNNING|STOPPING|STOPPED|FAILED|ERROR|DELETING|DELETED",
                "url": "https://<uuid>.app.gra.ai.cloud.ovh.net", "availableReplicas", "info": {"code", "message"},
                "history": [{"state", "date"}], "lastTransitionDate", ...}}

Boxes are addressed by their gpuq name (the ``gpuq-instance`` label that :meth:`OvhProvider.create` sets;
``Instance.id`` is that name, ``Instance.label`` the app's UUID) or by the app's UUID. The name exists
before the app does, so the agent inside knows its identity from creation on:
``GPUQ_AGENT_INSTANCE_ID=<name>`` (and its ``GPUQ_AGENT_SECRET``, derived from that name).

The CLI runs as an asyncio subprocess with a timeout (never blocking the event loop). Its failures
are translated here into :class:`~shared.errors.ProviderError`; the CLI token is never logged.
"""

from __future__ import annotations

import asyncio
import base64
import builtins
import contextlib
import json
import logging
import re
import time
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from shared.errors import InstanceNotFound, ProviderError
from shared.models import Instance, InstanceState
from shared.settings import OvhSettings, split_csv

__all__ = ["STATE_MAP", "OvhProvider", "instance_from_app"]

log = logging.getLogger("gpuq.provider.ovh")

INSTANCE_LABEL = "gpuq-instance"
DEPLOYMENT_LABEL = "gpuq"

STATE_MAP: dict[str, InstanceState] = {
    "QUEUED": InstanceState.STARTING,
    "INITIALIZING": InstanceState.STARTING,
    "SCALING": InstanceState.STARTING,
    "RUNNING": InstanceState.RUNNING,
    "STOPPING": InstanceState.STOPPING,
    "DELETING": InstanceState.STOPPING,
    "STOPPED": InstanceState.STOPPED,
    "FAILED": InstanceState.STOPPED,
    "ERROR": InstanceState.STOPPED,
    "DELETED": InstanceState.GONE,
}
"""AI Deploy app states → provider-neutral states. FAILED/ERROR apps run nothing and bill nothing."""

_UUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")
_NOT_FOUND = re.compile(r"not.?found|404|does not exist", re.IGNORECASE)


def _epoch(value: Any) -> float | None:
    if not isinstance(value, str) or not value:
        return None
    with contextlib.suppress(ValueError):
        return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()
    return None


def _last_entry(history: Any, states: set[str]) -> float | None:
    if not isinstance(history, list):
        return None
    found = [_epoch(h.get("date")) for h in history if isinstance(h, dict) and h.get("state") in states]
    dates = [d for d in found if d is not None]
    return max(dates) if dates else None


def instance_from_app(app: dict[str, Any], *, price_per_hour: float = 0.0) -> Instance:
    """One ``ovhai app get -o json`` document → :class:`Instance` (URL only while RUNNING)."""
    status = app.get("status") or {}
    spec = app.get("spec") or {}
    raw_state = str(status.get("state") or "").upper()
    state = STATE_MAP.get(raw_state)
    if state is None:
        raise ProviderError(f"OVH app {app.get('id')} is in an unknown state {raw_state!r}")
    info = status.get("info") or {}
    detail = f"{raw_state.lower()} (app {app.get('id')})"
    if info.get("message"):
        detail += f": {info['message']}"
    labels = spec.get("labels") or {}
    return Instance(
        # The gpuq name, when the app has one: the id the control plane and the agent know the box by (its
        # agent secret is derived from it), and that the app's UUID is resolved from.
        id=str(labels.get(INSTANCE_LABEL) or app.get("id")),
        provider="ovh",
        state=state,
        agent_url=str(status["url"]).rstrip("/") if state is InstanceState.RUNNING and status.get("url") else None,
        label=str(app.get("id")),
        price_per_hour=price_per_hour,
        started_at=_last_entry(status.get("history"), {"RUNNING"}) if state.is_up() else None,
        stopped_at=_last_entry(status.get("history"), {"STOPPED", "FAILED", "ERROR"})
        if state is InstanceState.STOPPED
        else None,
        detail=detail,
    )


class OvhProvider:
    """The :class:`~shared.boxes.providers.base.ComputeProvider` for OVH AI Deploy apps."""

    name = "ovh"

    def __init__(self, settings: OvhSettings) -> None:
        self.settings = settings
        self._ids: dict[str, str] = {}  # gpuq name → app UUID (an app keeps its id for life)

    # --- the CLI ------------------------------------------------------------------------------------
    async def _cli(self, *args: str, stdin: bytes | None = None) -> Any:
        """Run ``ovhai <args> -o json`` and parse its output. Raises ``InstanceNotFound`` or ProviderError."""
        # Options go right after the verb: anything after an image would be the container's command.
        argv = [self.settings.cli, *args[:2], "-o", "json"]
        if self.settings.token:
            argv += ["--token", self.settings.token]
        argv += args[2:]
        shown = " ".join(args[:3])  # what logs may show: never the token, never env values
        try:
            proc = await asyncio.create_subprocess_exec(
                *argv,
                stdin=asyncio.subprocess.PIPE if stdin is not None else asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
            )
        except OSError as exc:
            raise ProviderError(f"cannot run {self.settings.cli!r}: {exc.strerror or exc}") from exc
        try:
            out, err = await asyncio.wait_for(proc.communicate(stdin), self.settings.timeout_s)
        except TimeoutError:
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
            await proc.wait()
            raise ProviderError(f"ovhai {shown} did not answer within {self.settings.timeout_s:g}s") from None
        message = self._redact(err.decode(errors="replace").strip() or out.decode(errors="replace").strip())
        if proc.returncode != 0:
            if _NOT_FOUND.search(message):
                raise InstanceNotFound(message)
            raise ProviderError(f"ovhai {shown} failed ({proc.returncode}): {message[:300]}")
        text = out.decode(errors="replace").strip()
        if not text:
            return None
        try:
            return json.loads(text)
        except ValueError as exc:
            raise ProviderError(f"ovhai {shown} printed something else than JSON: {text[:200]!r}") from exc

    def _redact(self, text: str) -> str:
        for secret in (self.settings.token, self.settings.app_token, self.settings.app_basic_auth):
            if secret:
                text = text.replace(secret, "***")
        return text

    async def _resolve(self, instance_id: str) -> str | None:
        """The app UUID of a box given by UUID or by gpuq name; ``None`` if no app has that name."""
        if _UUID.match(instance_id):
            return instance_id
        if instance_id in self._ids:
            return self._ids[instance_id]
        for app in await self._apps():
            labels = (app.get("spec") or {}).get("labels") or {}
            if labels.get(INSTANCE_LABEL) == instance_id and (app.get("status") or {}).get("state") != "DELETED":
                self._ids[instance_id] = str(app["id"])
                return self._ids[instance_id]
        return None

    async def _apps(self) -> list[dict[str, Any]]:
        listed = await self._cli("app", "list")
        if not isinstance(listed, list):
            raise ProviderError("ovhai app list did not print a JSON list")
        return [a for a in listed if isinstance(a, dict)]

    async def _app(self, instance_id: str) -> dict[str, Any] | None:
        app_id = await self._resolve(instance_id)
        if app_id is None:
            return None
        try:
            app = await self._cli("app", "get", app_id)
        except InstanceNotFound:
            self._ids.pop(instance_id, None)
            return None
        if not isinstance(app, dict):
            raise ProviderError(f"ovhai app get {app_id} did not print a JSON object")
        return app

    def _view(self, app: dict[str, Any]) -> Instance:
        return instance_from_app(app, price_per_hour=self.settings.price_per_hour)

    # --- ComputeProvider ----------------------------------------------------------------------------
    async def get(self, instance_id: str) -> Instance | None:
        app = await self._app(instance_id)
        if app is None:
            return None
        view = self._view(app)
        return None if view.state is InstanceState.GONE else view

    async def start(self, instance_id: str) -> Instance:
        app = await self._app(instance_id)
        if app is None:
            raise ProviderError(
                f"no OVH app {instance_id!r}: create it first (README: Run on OVH AI Deploy)", code="no_instance"
            )
        view = self._view(app)
        if view.state.is_up():
            return view
        if view.state is InstanceState.STOPPING:
            return view  # AI Deploy refuses a start while stopping; the caller asks again later
        try:
            started = await self._cli("app", "start", str(app["id"]))
        except InstanceNotFound as exc:
            raise ProviderError(f"OVH app {instance_id!r} vanished while starting") from exc
        log.info("OVH app %s (%s) start requested", app["id"], instance_id)
        return self._view(started) if isinstance(started, dict) else await self._must_get(instance_id)

    async def stop(self, instance_id: str) -> Instance:
        """Stop, then confirm: poll until the app is STOPPED (or gone), up to ``stop_confirm_s``."""
        app = await self._app(instance_id)
        if app is None:
            return Instance(id=instance_id, provider=self.name, state=InstanceState.GONE)
        view = self._view(app)
        if view.state is InstanceState.STOPPED:
            return view
        if view.state is not InstanceState.STOPPING:
            try:
                await self._cli("app", "stop", str(app["id"]))
            except InstanceNotFound:
                return Instance(id=instance_id, provider=self.name, state=InstanceState.GONE)
            log.info("OVH app %s (%s) stop requested", app["id"], instance_id)
        deadline = time.monotonic() + self.settings.stop_confirm_s
        while True:
            current = await self.get(instance_id)
            if current is None:
                return Instance(id=instance_id, provider=self.name, state=InstanceState.GONE)
            if current.state is InstanceState.STOPPED:
                return current
            if time.monotonic() + self.settings.poll_s > deadline:
                log.warning(
                    "OVH app %s still %s after %.0fs", instance_id, current.detail, self.settings.stop_confirm_s
                )
                return current
            await asyncio.sleep(self.settings.poll_s)

    async def list(self) -> list[Instance]:
        """The apps labelled with this deployment (``gpuq=<deployment>``), deleted ones left out."""
        out: list[Instance] = []
        for app in await self._apps():
            labels = (app.get("spec") or {}).get("labels") or {}
            if labels.get(DEPLOYMENT_LABEL) != self.settings.deployment:
                continue
            view = self._view(app)
            if view.state is not InstanceState.GONE:
                out.append(view)
        return out

    # --- lifecycle beyond the protocol (operators, tests) -------------------------------------------
    def run_args(self, name: str, env: dict[str, str] | None = None) -> builtins.list[str]:
        """The ``ovhai app run`` arguments that create the box (no secrets but the agent env values)."""
        s = self.settings
        if not s.image:
            raise ProviderError("OVH_IMAGE is not set: build and push infra/agent/Dockerfile first")
        args = [
            "app",
            "run",
            "--name",
            name,
            "--flavor",
            s.flavor,
            "--default-http-port",
            str(s.http_port),
            "--label",
            f"{DEPLOYMENT_LABEL}={s.deployment}",
            "--label",
            f"{INSTANCE_LABEL}={name}",
        ]
        if s.gpu > 0:
            args += ["--gpu", str(s.gpu)]
        if s.cpu > 0:
            args += ["--cpu", str(s.cpu)]
        if s.unsecure_http:
            args.append("--unsecure-http")
        if s.model_bucket:
            args += ["--volume", f"{s.model_bucket}@{s.region}:{s.model_mount}:RW:cache"]
        agent_env = {
            "GPUQ_AGENT_INSTANCE_ID": name,
            "GPUQ_AGENT_PORT": str(s.http_port),
            "GPUQ_AGENT_PRELOAD_MODELS": s.preload_models,
            "OLLAMA_PRELOAD_MODELS": s.preload_models,
            **_pairs(split_csv(s.agent_env)),
            **(env or {}),
        }
        for key, value in agent_env.items():
            args += ["--env", f"{key}={value}"]
        return [*args, s.image]

    async def create(self, name: str | None = None, env: dict[str, str] | None = None) -> Instance:
        """Create the app (it starts at once: AI Deploy runs a new app). Idempotent by name."""
        name = name or self.settings.app_name
        existing = await self.get(name)
        if existing is not None:
            return existing
        created = await self._cli(*self.run_args(name, env))
        if not isinstance(created, dict) or "id" not in created:
            raise ProviderError("ovhai app run did not print the created app")
        self._ids[name] = str(created["id"])
        log.info("OVH app %s created as %s", name, created["id"])
        return self._view(created)

    async def delete(self, instance_id: str) -> None:
        """Delete the app for good (its volumes' data stays in object storage)."""
        app_id = await self._resolve(instance_id)
        if app_id is None:
            return
        with contextlib.suppress(InstanceNotFound):
            await self._cli("app", "delete", app_id)
        self._ids.pop(instance_id, None)

    def agent_auth_headers(self) -> dict[str, str]:
        """Headers the control plane adds when it calls the agent through the app URL (OVH's own gate; the
        agent still checks gpuq's request signature, which travels in X-Gpuq-* headers)."""
        if self.settings.unsecure_http:
            return {}
        if self.settings.app_token:
            return {"Authorization": f"Bearer {self.settings.app_token}"}
        if self.settings.app_basic_auth:
            return {"Authorization": "Basic " + base64.b64encode(self.settings.app_basic_auth.encode()).decode()}
        raise ProviderError("OVH_UNSECURE_HTTP is false: set OVH_APP_TOKEN or OVH_APP_BASIC_AUTH to reach the agent")

    async def _must_get(self, instance_id: str) -> Instance:
        view = await self.get(instance_id)
        if view is None:
            raise ProviderError(f"OVH app {instance_id!r} vanished")
        return view


def _pairs(items: Sequence[str]) -> dict[str, str]:
    out: dict[str, str] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ValueError(f"OVH_AGENT_ENV entries are KEY=VALUE, got {item!r}")
        out[key.strip()] = value
    return out
