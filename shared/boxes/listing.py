"""What the fleet serves and runs, as the jobs API shows it: ``GET /v1/models`` (OpenAI's list shape)
and ``GET /v1/instances`` (the box registry, one entry per box of every pool)."""

from __future__ import annotations

from typing import Any

from shared.boxes.pools import model_key
from shared.boxes.registry import box_views
from shared.controlplane import ControlPlane
from shared.errors import NotFound, ValidationFailed
from shared.money.cost import Session, session_cost_usd

__all__ = ["BOX_STATES", "list_instances", "list_models", "model_entry"]

BOX_STATES = ("stopped", "starting", "ready", "draining")


def list_models(cp: ControlPlane) -> dict[str, Any]:
    """``{"object": "list", "data": [{"id", "object": "model", "owned_by": <pool>}]}``, each model once."""
    seen: set[str] = set()
    data = []
    for model, pool in cp.pools.served_models():
        if model_key(model) not in seen:
            seen.add(model_key(model))
            data.append({"id": model, "object": "model", "created": 0, "owned_by": pool})
    return {"object": "list", "data": data}


def model_entry(cp: ControlPlane, model_id: str) -> dict[str, Any]:
    for entry in list_models(cp)["data"]:
        if model_key(entry["id"]) == model_key(model_id):
            return dict(entry)
    raise NotFound(f"no pool serves model {model_id!r}", code="model_not_found")


def list_instances(cp: ControlPlane, *, pool: str | None = None, state: str | None = None) -> dict[str, Any]:
    """Every box of every pool (or of ``pool``, in ``state``), with what runs on it and what it has cost."""
    if pool is not None and cp.pools.get(pool) is None:
        names = ", ".join(p.name for p in cp.pools)
        raise ValidationFailed(f"pool: no pool {pool!r} (pools: {names})", code="unknown_pool")
    if state is not None and state not in BOX_STATES:
        raise ValidationFailed(f"state: one of {', '.join(BOX_STATES)}", code="invalid_state")
    now = cp.clock.now()
    out = []
    for config in cp.pools:
        if pool is not None and config.name != pool:
            continue
        for view in box_views(cp, config):
            if state is not None and view.state != state:
                continue
            session = view.record.get("session") or {}
            price = float(session.get("price_per_hour") or 0.0)
            cost = (
                session_cost_usd(Session(view.id, price, float(session["start_s"]), session.get("ready_s"), None), now)
                if session
                else 0.0
            )
            out.append(
                {
                    "id": view.id,
                    "pool": config.name,
                    "provider": config.provider,
                    "state": view.state,
                    "models": list(config.models),
                    "running_jobs": sorted(view.running),
                    "slots": config.jobs_per_box,
                    "started_at": view.start_requested_at if view.state != "stopped" else None,
                    "ready_at": view.ready_at if view.state != "stopped" else None,
                    "last_heartbeat": view.last_heartbeat,
                    "price_per_hour": price,
                    "cost_usd": round(cost, 6),
                    "start_reason": view.record.get("start_reason"),
                }
            )
    return {"instances": out}
