"""What the control plane remembers about each box: its current session (start asked, ready, jobs),
last job activity, and closed sessions with their cost (see ``shared/money/cost.py``)."""

from __future__ import annotations

import logging
from typing import Any

from shared.boxes.coldstart import ColdStartEstimator, ColdStartPhases
from shared.controlplane import ControlPlane
from shared.models import Instance, Job
from shared.money.cost import Session, Span, allocate_seconds, session_cost_usd

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

log = logging.getLogger("gpuq.instances")

KIND = "instance"
COLDSTART_KIND = "coldstart"
SESSION_KIND = "session"


def instance_record(cp: ControlPlane, instance_id: str) -> dict[str, Any]:
    return cp.store.get_record(KIND, instance_id) or {}


def _update(cp: ControlPlane, instance_id: str, **fields: Any) -> dict[str, Any]:
    record = instance_record(cp, instance_id)
    record.update(fields)
    cp.store.put_record(KIND, instance_id, record)
    return record


def start_box(cp: ControlPlane, instance_id: str, current: Instance | None) -> Instance:
    """Start the box; first close the session of its previous run if nobody saw it stop."""
    if current is not None and instance_record(cp, instance_id).get("session"):
        close_session(cp, instance_id, stopped_at=current.stopped_at or cp.clock.now())
    started = cp.run(cp.provider.start(instance_id))
    note_start_requested(cp, instance_id, started.price_per_hour)
    return started


def provisional_cost(cp: ControlPlane, job: Job) -> float | None:
    """A finished job's running time at its box's price: shown until the session closes and the full
    allocation (cold start and idle shares) replaces it."""
    if job.instance_id is None or job.handed_at is None or job.finished_at is None:
        return None
    session = instance_record(cp, job.instance_id).get("session") or {}
    return round((job.finished_at - job.handed_at) * float(session.get("price_per_hour", 0.0)) / 3600.0, 6)


def note_start_requested(cp: ControlPlane, instance_id: str, price_per_hour: float = 0.0) -> None:
    now = cp.clock.now()
    record = instance_record(cp, instance_id)
    if record.get("session"):  # a start while a session is open: the box stopped unseen; close it first
        close_session(cp, instance_id, stopped_at=now)
        record = instance_record(cp, instance_id)
    record.update(
        start_requested_at=now,
        last_activity_at=now,
        ready_at=None,
        session={"start_s": now, "ready_s": None, "price_per_hour": price_per_hour, "jobs": []},
    )
    cp.store.put_record(KIND, instance_id, record)


def note_ready(cp: ControlPlane, instance_id: str, phases: dict[str, float] | None = None) -> None:
    """The box is ready: close its cold start and add the measurement to the running estimate."""
    record = instance_record(cp, instance_id)
    now = cp.clock.now()
    record["ready_at"] = now
    session = record.get("session")
    if session is not None and session.get("ready_s") is None:
        session["ready_s"] = now
        total = now - session["start_s"]
        agent_up = min(total, (phases or {}).get("agent_up_s", 0.0))
        loaded = min(total - agent_up, (phases or {}).get("model_loaded_s", 0.0))
        measured = ColdStartPhases(
            instance_start_s=total - agent_up - loaded, agent_up_s=agent_up, model_loaded_s=loaded
        )
        estimator = cold_start_estimator(cp)
        estimator.record(measured, key=cp.settings.provider)
        cp.store.put_record(COLDSTART_KIND, "estimator", estimator.to_dict())
        log.info(
            "instance %s ready %.1fs after its start was requested (box %.1fs, agent %.1fs, model %.1fs); "
            "cold-start estimate now %.1fs",
            instance_id,
            total,
            measured.instance_start_s,
            agent_up,
            loaded,
            estimator.estimate_s(total, key=cp.settings.provider),
        )
    cp.store.put_record(KIND, instance_id, record)


def cold_start_estimator(cp: ControlPlane) -> ColdStartEstimator:
    raw = cp.store.get_record(COLDSTART_KIND, "estimator")
    return ColdStartEstimator.from_dict(raw) if raw else ColdStartEstimator()


def cold_start_estimate_s(cp: ControlPlane) -> float | None:
    """Median of the recent measured cold starts of this provider, ``None`` before the first."""
    estimator = cold_start_estimator(cp)
    key = cp.settings.provider
    return estimator.estimate_s(0.0, key=key) if estimator.count(key) else None


def note_activity(cp: ControlPlane, instance_id: str) -> None:
    _update(cp, instance_id, last_activity_at=cp.clock.now())


def note_handover(cp: ControlPlane, instance: Instance, job_id: str) -> None:
    record = instance_record(cp, instance.id)
    record["last_activity_at"] = cp.clock.now()
    session = record.get("session")
    if session is None:  # a box we did not see start (started by another path, or before an upgrade)
        session = {"start_s": instance.started_at or cp.clock.now(), "ready_s": None, "jobs": []}
        record["session"] = session
    session["price_per_hour"] = instance.price_per_hour or session.get("price_per_hour", 0.0)
    if job_id not in session["jobs"]:
        session["jobs"].append(job_id)
    cp.store.put_record(KIND, instance.id, record)


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
    """The box stopped: charge every billed second of its session to the session's jobs, record it."""
    record = instance_record(cp, instance_id)
    raw = record.pop("session", None)
    if not raw:
        return None
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
    }
    cp.store.put_record(SESSION_KIND, f"{instance_id}@{raw['start_s']:.3f}", closed)
    cp.store.put_record(KIND, instance_id, record)
    log.info(
        "instance %s session closed: %.0fs billed, $%.4f, %d job(s)",
        instance_id,
        stop_s - session.start_s,
        closed["cost_usd"],
        len(jobs),
    )
    return closed


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
