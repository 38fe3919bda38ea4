"""What the control plane remembers about each box: its current session (start asked, ready, jobs),
last job activity, and closed sessions with their cost (see ``shared/money/cost.py``)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from shared.boxes.coldstart import ColdStartEstimator, ColdStartPhases
from shared.boxes.idletime import idle_seconds
from shared.boxes.registry import box_run, change_box
from shared.controlplane import ControlPlane
from shared.models import Instance, Job
from shared.money.cost import Session, Span, allocate_seconds, session_cost_usd
from shared.observability.events import announce

__all__ = [
    "close_session",
    "cold_start_estimate_s",
    "cold_start_estimator",
    "instance_record",
    "note_activity",
    "note_handover",
    "note_ready",
    "note_start_requested",
    "provisional_cost",
    "session_records",
    "spans_of",
    "start_box",
]

KIND = "instance"
COLDSTART_KIND = "coldstart"
SESSION_KIND = "session"


def instance_record(cp: ControlPlane, instance_id: str) -> dict[str, Any]:
    return cp.store.get_record(KIND, instance_id) or {}


def _change(cp: ControlPlane, instance_id: str, change: Callable[[dict[str, Any]], bool | None]) -> dict[str, Any]:
    stored, _ = change_box(cp, instance_id, change)
    return stored or {}


def start_box(cp: ControlPlane, instance_id: str, current: Instance | None, *, pool: str | None = None) -> Instance:
    """Start the box; first close the session of its previous run if nobody saw it stop."""
    if current is not None and instance_record(cp, instance_id).get("session"):
        close_session(cp, instance_id, stopped_at=current.stopped_at or cp.clock.now())
    started = cp.run(cp.provider.start(instance_id))
    note_start_requested(cp, instance_id, started.price_per_hour, pool=pool)
    return started


def provisional_cost(cp: ControlPlane, job: Job) -> float | None:
    """A finished job's running time at its box's price: shown until the session closes and the full
    allocation (cold start and idle shares) replaces it."""
    if job.instance_id is None or job.handed_at is None or job.finished_at is None:
        return None
    session = instance_record(cp, job.instance_id).get("session") or {}
    return round((job.finished_at - job.handed_at) * float(session.get("price_per_hour", 0.0)) / 3600.0, 6)


def note_start_requested(
    cp: ControlPlane, instance_id: str, price_per_hour: float = 0.0, *, pool: str | None = None
) -> None:
    now = cp.clock.now()
    if instance_record(cp, instance_id).get("session"):  # a start while a session is open: it stopped unseen
        close_session(cp, instance_id, stopped_at=now)

    def change(record: dict[str, Any]) -> None:
        record.update(
            start_requested_at=now,
            last_activity_at=now,
            ready_at=None,
            session={"start_s": now, "ready_s": None, "price_per_hour": price_per_hour, "jobs": []},
        )
        if pool is not None:
            record["pool"] = pool

    stored = _change(cp, instance_id, change)
    owner = cp.pools.of_box(instance_id)
    data = {"pool": stored.get("pool"), "provider": owner.provider if owner else None, "price_per_hour": price_per_hour}
    announce(cp, "instance.provisioning", instance_id, data, source="instances", occurrence=box_run(stored))


def note_ready(
    cp: ControlPlane, instance_id: str, phases: dict[str, float] | None = None, *, key: str | None = None
) -> dict[str, float]:
    """The box is ready: close its cold start and add the measurement to the running estimate of ``key``
    (its pool; the provider's name by default). Returns the measurement (for the ``instance.ready`` event;
    empty when the session's cold start was closed already)."""
    now = cp.clock.now()
    measured: list[tuple[float, ColdStartPhases]] = []

    def change(record: dict[str, Any]) -> None:
        measured.clear()
        record["ready_at"] = now
        session = record.get("session")
        if session is not None and session.get("ready_s") is None:
            session["ready_s"] = now
            total = now - session["start_s"]
            agent_up = min(total, (phases or {}).get("agent_up_s", 0.0))
            loaded = min(total - agent_up, (phases or {}).get("model_loaded_s", 0.0))
            # by phase, for gpuq_cold_start_seconds{pool,phase}
            start = total - agent_up - loaded
            session["phases_s"] = {"instance_start": start, "agent_up": agent_up, "model_load": loaded}
            measured.append(
                (
                    total,
                    ColdStartPhases(
                        instance_start_s=total - agent_up - loaded, agent_up_s=agent_up, model_loaded_s=loaded
                    ),
                )
            )

    _change(cp, instance_id, change)
    if not measured:
        return {}
    total, phases_measured = measured[0]
    estimate = _record_cold_start(cp, total, phases_measured, key or cp.settings.provider)
    return {
        "cold_start_s": round(total, 3),
        "instance_start_s": round(phases_measured.instance_start_s, 3),
        "agent_up_s": round(phases_measured.agent_up_s, 3),
        "model_loaded_s": round(phases_measured.model_loaded_s, 3),
        "cold_start_estimate_s": round(estimate, 3),
    }


def _record_cold_start(cp: ControlPlane, total: float, measured: ColdStartPhases, key: str) -> float:
    """Add the measurement to the estimator; returns the new estimate of ``key``."""

    def mutate(current: dict[str, Any] | None) -> dict[str, Any]:
        raw = {k: v for k, v in (current or {}).items() if k != "id"}
        estimator = ColdStartEstimator.from_dict(raw) if raw else ColdStartEstimator()
        estimator.record(measured, key=key)
        return estimator.to_dict()

    stored, _ = cp.store.modify_record(COLDSTART_KIND, "estimator", mutate)
    estimator = ColdStartEstimator.from_dict({k: v for k, v in (stored or {}).items() if k != "id"})
    return estimator.estimate_s(total, key=key)


def cold_start_estimator(cp: ControlPlane) -> ColdStartEstimator:
    raw = cp.store.get_record(COLDSTART_KIND, "estimator")
    return ColdStartEstimator.from_dict({k: v for k, v in raw.items() if k != "id"}) if raw else ColdStartEstimator()


def cold_start_estimate_s(cp: ControlPlane, key: str | None = None) -> float | None:
    """Median of the recent measured cold starts of ``key`` (a pool; the provider by default); ``None``
    before the first."""
    estimator = cold_start_estimator(cp)
    key = key or cp.settings.provider
    return estimator.estimate_s(0.0, key=key) if estimator.count(key) else None


def note_activity(cp: ControlPlane, instance_id: str) -> None:
    now = cp.clock.now()
    _change(cp, instance_id, lambda record: record.update(last_activity_at=now))


def note_handover(cp: ControlPlane, instance: Instance, job_id: str) -> None:
    now = cp.clock.now()

    def change(record: dict[str, Any]) -> None:
        record["last_activity_at"] = now
        session = record.get("session")
        if session is None:  # a box we did not see start (started by another path, or before an upgrade)
            session = {"start_s": instance.started_at or now, "ready_s": None, "jobs": []}
            record["session"] = session
        session["price_per_hour"] = instance.price_per_hour or session.get("price_per_hour", 0.0)
        if job_id not in session["jobs"]:
            session["jobs"].append(job_id)

    _change(cp, instance.id, change)


def spans_of(jobs: list[Job], now: float) -> list[Span]:
    return [
        Span(j.id, j.queued_at, j.handed_at or j.started_at or j.queued_at, j.finished_at or now)
        for j in jobs
        if (j.handed_at or j.started_at) is not None
    ]


def _session(instance_id: str, raw: dict[str, Any], stop_s: float | None) -> Session:
    return Session(
        instance_id, float(raw.get("price_per_hour", 0.0)), float(raw["start_s"]), raw.get("ready_s"), stop_s
    )


def close_session(cp: ControlPlane, instance_id: str, *, stopped_at: float) -> dict[str, Any] | None:
    """The box stopped: charge every billed second of its session to the session's jobs, record it.

    The session is taken off the box's record by compare-and-set, so of two callers seeing the same stop
    only one charges it."""
    taken: list[dict[str, Any]] = []

    def change(record: dict[str, Any]) -> bool:
        taken.clear()
        raw = record.pop("session", None)
        if not raw:
            return False
        taken.append(raw)
        return True

    _change(cp, instance_id, change)
    if not taken:
        return None
    raw = taken[0]
    stop_s = max(stopped_at, float(raw["start_s"]))
    session = _session(instance_id, raw, stop_s)
    jobs = [j for j in (cp.store.get(job_id) for job_id in raw.get("jobs", [])) if j is not None]
    seconds = allocate_seconds(session, spans_of(jobs, stopped_at), stopped_at)
    rate = session.price_per_hour / 3600.0
    for job in jobs:
        share = round(seconds.get(job.id, 0.0) * rate, 6)

        def mutate(current: Job, share: float = share) -> Job:
            current.cost_usd = share
            return current

        cp.store.modify(job.id, mutate)
    closed = {
        **raw,
        "instance_id": instance_id,
        "stop_s": stop_s,
        "cost_usd": round(session_cost_usd(session, stopped_at), 6),
        "allocated_s": round(sum(seconds.values()), 3),
        "idle_s": idle_seconds(raw, stop_s),
        "idle_since": None,
    }
    cp.store.put_record(SESSION_KIND, f"{instance_id}@{raw['start_s']:.3f}", closed)
    _announce_closed(cp, closed, len(jobs))
    return closed


def _announce_closed(cp: ControlPlane, closed: dict[str, Any], jobs: int) -> None:
    owner = cp.pools.of_box(closed["instance_id"])
    data = {
        "pool": owner.name if owner else None,
        "billed_s": round(closed["stop_s"] - float(closed["start_s"]), 3),
        "cost_usd": closed["cost_usd"],
        "price_per_hour": closed.get("price_per_hour", 0.0),
        "jobs": jobs,
        "allocated_s": closed["allocated_s"],
        "idle_s": closed["idle_s"],
    }
    occurrence = f"{float(closed['start_s']):.3f}"
    announce(cp, "cost.session_closed", closed["instance_id"], data, source="cost", occurrence=occurrence)


def session_records(cp: ControlPlane, since: float, now: float) -> list[dict[str, Any]]:
    """Closed sessions that overlap [since, now], plus the open ones (up to now)."""
    out = [r for r in cp.store.list_records(SESSION_KIND) if (r.get("stop_s") or now) >= since]
    for record in cp.store.list_records(KIND):
        raw = record.get("session")
        if raw:
            session = _session(record.get("id", "?"), raw, None)
            out.append(
                {
                    **raw,
                    "instance_id": record.get("id", "?"),
                    "stop_s": None,
                    "cost_usd": round(session_cost_usd(session, now), 6),
                    "open": True,
                }
            )
    return out
