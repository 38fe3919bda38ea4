"""The box registry: what every functions instance knows of the fleet, in the job store, changed only by
compare-and-set (``store.modify_record``), so two instances deciding at once never both act.

Two kinds of record:

* ``instance/<box id>`` -- one box: its ``pool``, ``state`` (``stopped`` → ``starting`` → ``ready`` →
  ``draining`` → ``stopped``), the jobs running on it (``running``: job id → expected work and since when),
  ``last_heartbeat`` (its agent's latest report batch or ready announcement), why it was started, and its
  open cost session (``shared.boxes.instances``).
* ``pool/<pool name>`` -- which of the pool's boxes are ``active`` (starting, ready) or ``draining``, and
  the last scale decisions with their numbers. Starting a box is a compare-and-set on this record, so the
  number of boxes started for one need is decided once, whoever decides.

A slot on a box is reserved on its record before the job is handed over and released when the job ends
or is re-driven; a box that is draining takes no new job, and a box with a job never drains.

A box whose model server could not come up (its agent announced ``failed``) carries ``failed_at``,
``failed_reason`` and ``failures`` (in a row; a ready resets it): for ``box_failed_cooldown_s`` after a
failure the pool starts its other boxes, not this one.
"""

from __future__ import annotations

import copy
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from shared.boxes.idletime import note_busy, note_idle
from shared.boxes.pools import PoolConfig
from shared.boxes.scaling import ScaleDecision
from shared.controlplane import ControlPlane
from shared.observability.events import announce

__all__ = [
    "BOX_KIND",
    "POOL_KIND",
    "BoxView",
    "DrainAnswer",
    "box_run",
    "box_views",
    "change_box",
    "claim_starts",
    "cooling_down",
    "heartbeat",
    "mark_failed",
    "mark_ready",
    "mark_stopped",
    "pool_record",
    "release_slot",
    "request_drain",
    "reserve_slot",
]

log = logging.getLogger("gpuq.registry")

BOX_KIND = "instance"
POOL_KIND = "pool"
DECISIONS_KEPT = 20
HEARTBEAT_WRITE_S = 15.0  # a fresher heartbeat is not written again (one read per report batch, few writes)


@dataclass(frozen=True, slots=True)
class BoxView:
    """One box as the registry sees it (a read-only snapshot)."""

    id: str
    pool: str
    state: str
    running: dict[str, dict[str, float]]
    last_heartbeat: float | None
    start_requested_at: float | None
    ready_at: float | None
    last_activity_at: float | None
    record: dict[str, Any]

    def remaining_work_s(self, now: float) -> float:
        return sum(max(0.0, r.get("work_s", 0.0) - (now - r.get("at", now))) for r in self.running.values())

    def free_slots(self, slots: int) -> int:
        return max(0, slots - len(self.running))


def _view(box_id: str, record: dict[str, Any], pool: str) -> BoxView:
    return BoxView(
        id=box_id,
        pool=str(record.get("pool") or pool),
        state=str(record.get("state") or "stopped"),
        running=dict(record.get("running") or {}),
        last_heartbeat=record.get("last_heartbeat"),
        start_requested_at=record.get("start_requested_at"),
        ready_at=record.get("ready_at"),
        last_activity_at=record.get("last_activity_at"),
        record=record,
    )


def box_run(record: dict[str, Any]) -> str:
    """Which run of the box a record is at (when its start was claimed): tells apart the events of its runs."""
    return str(record.get("run") or record.get("start_requested_at") or "0")


def pool_record(cp: ControlPlane, pool: str) -> dict[str, Any]:
    record = cp.store.get_record(POOL_KIND, pool) or {}
    record.setdefault("active", [])
    record.setdefault("draining", [])
    return record


def box_views(cp: ControlPlane, pool: PoolConfig) -> list[BoxView]:
    """Every box of the pool, in start order (one read per box)."""
    views = []
    for box_id in pool.box_ids():
        views.append(_view(box_id, cp.store.get_record(BOX_KIND, box_id) or {}, pool.name))
    return views


def change_box(
    cp: ControlPlane, box_id: str, change: Callable[[dict[str, Any]], bool | None]
) -> tuple[dict[str, Any] | None, bool]:
    """Compare-and-set on one box record: ``change(record)`` edits a copy in place (it is re-run on a lost
    race, so it changes nothing else); returning False writes nothing. Returns ``(stored, written)``."""

    def mutate(current: dict[str, Any] | None) -> dict[str, Any] | None:
        record = copy.deepcopy(current) if current else {}
        record.pop("id", None)
        return record if change(record) is not False else None

    return cp.store.modify_record(BOX_KIND, box_id, mutate)


def claim_starts(cp: ControlPlane, pool: PoolConfig, decision: ScaleDecision) -> list[str]:
    """Activate boxes until the pool has ``decision.target`` up or starting; returns the ones this call activated.

    Decided on the pool record's current active set (not on the caller's snapshot), so racing callers with
    the same need activate it once between them.
    """
    now = cp.clock.now()
    chosen: list[str] = []
    cooling = cooling_down(cp, pool)

    def mutate(current: dict[str, Any] | None) -> dict[str, Any] | None:
        chosen.clear()
        record = copy.deepcopy(current) if current else {}
        record.pop("id", None)
        active = list(record.get("active") or [])
        draining = set(record.get("draining") or [])
        missing = decision.target - len(active)
        if missing <= 0:
            return None
        free = [b for b in pool.box_ids() if b not in active and b not in draining and b not in cooling]
        chosen.extend(free[:missing])
        if not chosen:
            return None
        record["active"] = active + chosen
        record["draining"] = sorted(draining)
        numbers = {**decision.numbers(), "active": len(active), "reason": decision.reason(), "at": now}
        record["decisions"] = [*(record.get("decisions") or []), {**numbers, "started": list(chosen)}][-DECISIONS_KEPT:]
        return record

    _, written = cp.store.modify_record(POOL_KIND, pool.name, mutate)
    if not written:
        return []
    for box_id in chosen:
        _note_starting(cp, box_id, pool, decision, now)
        data = {"pool": pool.name, "reason": decision.reason(), **decision.numbers()}
        announce(cp, "instance.start_requested", box_id, data, source="scaling", occurrence=f"{now:.3f}")
    return list(chosen)


def _note_starting(cp: ControlPlane, box_id: str, pool: PoolConfig, decision: ScaleDecision, now: float) -> None:
    def change(record: dict[str, Any]) -> None:
        record.update(
            pool=pool.name,
            state="starting",
            running={},
            models=list(pool.models),
            start_reason={**decision.numbers(), "reason": decision.reason()},
            start_requested_at=now,
            last_heartbeat=now,
            ready_at=None,
            run=f"{now:.3f}",
            stop_reason=None,
            stop_detail=None,
        )

    change_box(cp, box_id, change)


def mark_ready(cp: ControlPlane, box_id: str, pool: str, detail: dict[str, Any] | None = None) -> None:
    """The box's agent is up and its models are loaded (its ready announcement, or a first handover).
    ``detail``: what the event ``instance.ready`` adds (the agent's start-up phases)."""
    now = cp.clock.now()

    def change(record: dict[str, Any]) -> bool:
        if record.get("state") == "ready":
            return False
        if record.get("state") == "draining":
            return False
        record.update(pool=record.get("pool") or pool, state="ready", last_heartbeat=now, failures=0)
        record.setdefault("running", {})
        record.setdefault("run", f"{now:.3f}")  # a box seen up that no claim started
        note_idle(record, now)
        return True

    stored, written = change_box(cp, box_id, change)
    _activate(cp, pool, box_id)
    if written and stored is not None:
        since = stored.get("start_requested_at")
        data = {
            "pool": pool,
            "reason": "first_handover",
            "cold_start_s": round(now - float(since), 3) if since else None,
            **(detail or {}),
        }
        announce(cp, "instance.ready", box_id, data, source="registry", occurrence=box_run(stored))


def _activate(cp: ControlPlane, pool: str, box_id: str) -> None:
    """A box seen up (started before the registry, or by the operator) counts as active."""

    def mutate(current: dict[str, Any] | None) -> dict[str, Any] | None:
        record = copy.deepcopy(current) if current else {}
        record.pop("id", None)
        if box_id in (record.get("active") or []) or box_id in (record.get("draining") or []):
            return None
        record["active"] = [*(record.get("active") or []), box_id]
        return record

    cp.store.modify_record(POOL_KIND, pool, mutate)


def mark_failed(cp: ControlPlane, box_id: str, reason: str) -> None:
    """The box's model server could not come up (its agent said why): noted on its record, so that the
    pool's next starts pass it over for ``box_failed_cooldown_s``."""
    now = cp.clock.now()

    def change(record: dict[str, Any]) -> None:
        record.update(failed_at=now, failed_reason=reason[:200], failures=int(record.get("failures") or 0) + 1)
        record["stop_reason"] = "model_server_failed"  # what the box's instance.stopped event will say

    stored, _ = change_box(cp, box_id, change)
    data = {"pool": (stored or {}).get("pool"), "reason": reason[:200], "failures": (stored or {}).get("failures")}
    announce(cp, "instance.failed", box_id, data, source="registry", occurrence=box_run(stored or {}))


def cooling_down(cp: ControlPlane, pool: PoolConfig) -> set[str]:
    """The pool's boxes that failed within the last ``box_failed_cooldown_s`` (not to be started now)."""
    since = cp.clock.now() - cp.settings.box_failed_cooldown_s
    return {v.id for v in box_views(cp, pool) if float(v.record.get("failed_at") or -1e18) > since}


def heartbeat(cp: ControlPlane, box_id: str) -> None:
    """The box's agent reported: note it (written at most every ``HEARTBEAT_WRITE_S``)."""
    now = cp.clock.now()

    def change(record: dict[str, Any]) -> bool:
        if now - float(record.get("last_heartbeat") or 0.0) < HEARTBEAT_WRITE_S:
            return False
        record["last_heartbeat"] = now
        return True

    change_box(cp, box_id, change)


def reserve_slot(cp: ControlPlane, box_id: str, job_id: str, *, work_s: float, slots: int) -> bool:
    """Take one of the box's ``slots`` for the job; False when the box is full, draining or stopped."""
    now = cp.clock.now()

    def change(record: dict[str, Any]) -> bool:
        running = record.setdefault("running", {})
        if job_id in running:
            return False
        if record.get("state") not in ("starting", "ready") or len(running) >= slots:
            return False
        if not running:
            note_busy(record, now)
        running[job_id] = {"work_s": round(work_s, 3), "at": now}
        return True

    stored, written = change_box(cp, box_id, change)
    return written or job_id in ((stored or {}).get("running") or {})


def release_slot(cp: ControlPlane, box_id: str, job_id: str) -> None:
    def change(record: dict[str, Any]) -> bool:
        running = record.get("running") or {}
        if job_id not in running:
            return False
        del running[job_id]
        record["running"] = running
        record["last_activity_at"] = now = cp.clock.now()
        note_idle(record, now)
        return True

    change_box(cp, box_id, change)


def mark_stopped(cp: ControlPlane, box_id: str, pool: str) -> list[str]:
    """The provider says the box is stopped (or gone): out of the pool's active set. Returns the jobs that
    were still running on it, for the caller to re-drive."""
    orphans: list[str] = []

    def change(record: dict[str, Any]) -> bool:
        orphans[:] = list((record.get("running") or {}).keys())
        if record.get("state") in (None, "stopped") and not orphans:
            return False
        record.update(state="stopped", running={})
        return True

    change_box(cp, box_id, change)

    def mutate(current: dict[str, Any] | None) -> dict[str, Any] | None:
        record = copy.deepcopy(current) if current else {}
        record.pop("id", None)
        active, draining = record.get("active") or [], record.get("draining") or []
        if box_id not in active and box_id not in draining:
            return None
        record["active"] = [b for b in active if b != box_id]
        record["draining"] = [b for b in draining if b != box_id]
        return record

    cp.store.modify_record(POOL_KIND, pool, mutate)
    return orphans


@dataclass(frozen=True, slots=True)
class DrainAnswer:
    granted: bool
    reason: str


def request_drain(
    cp: ControlPlane,
    box_id: str,
    pool: PoolConfig,
    *,
    cost_per_token: dict[str, float],
    detail: dict[str, Any] | None = None,
) -> DrainAnswer:
    """An idle box asks to stop. Granted unless a job runs on it, or the pool would fall under ``min_boxes``
    (then the idle boxes with the lowest cost per token are the ones kept). Once granted the box is
    ``draining``: no new job is routed to it. ``detail``: what the event ``instance.draining`` adds (the
    numbers of the idle policy)."""
    views = {v.id: v for v in box_views(cp, pool)}
    me = views.get(box_id)
    if me is None:
        return DrainAnswer(False, "unknown_box")
    if me.state == "draining":
        return DrainAnswer(True, "already_draining")
    if me.running:
        return DrainAnswer(False, "busy")
    keep = _kept_boxes(pool, views, cost_per_token)
    if box_id in keep:
        return DrainAnswer(False, "min_boxes")

    now = cp.clock.now()

    def change(record: dict[str, Any]) -> bool:
        if record.get("running"):
            return False
        record.update(state="draining", draining_since=now, stop_reason="drained_idle")
        return True

    stored, written = change_box(cp, box_id, change)
    if not written and (stored or {}).get("state") != "draining":
        return DrainAnswer(False, "busy")
    _move_to_draining(cp, pool.name, box_id)
    last = float(me.last_activity_at or me.ready_at or now)
    data = {
        "pool": pool.name,
        "reason": "idle",
        "idle_s": round(now - last, 3),
        "idle_policy": pool.idle_policy,
        "kept": sorted(keep),
        "min_boxes": pool.min_boxes,
        **(detail or {}),
    }
    announce(cp, "instance.draining", box_id, data, source="registry", occurrence=box_run(stored or {}))
    return DrainAnswer(True, "idle")


def _kept_boxes(pool: PoolConfig, views: dict[str, BoxView], cost_per_token: dict[str, float]) -> set[str]:
    """The ``min_boxes`` up boxes that stay: busy ones first, then the idle ones cheapest per token."""
    up = [v for v in views.values() if v.state in ("starting", "ready")]
    ranked = sorted(up, key=lambda v: (not v.running, cost_per_token.get(v.id, 0.0), v.id))
    return {v.id for v in ranked[: pool.min_boxes]}


def _move_to_draining(cp: ControlPlane, pool: str, box_id: str) -> None:
    def mutate(current: dict[str, Any] | None) -> dict[str, Any] | None:
        record = copy.deepcopy(current) if current else {}
        record.pop("id", None)
        active = record.get("active") or []
        draining = record.get("draining") or []
        if box_id in draining and box_id not in active:
            return None
        record["active"] = [b for b in active if b != box_id]
        record["draining"] = sorted({*draining, box_id})
        return record

    cp.store.modify_record(POOL_KIND, pool, mutate)
