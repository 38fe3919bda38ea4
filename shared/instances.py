"""What the control plane remembers about each box: when its start was asked, last job activity."""

from __future__ import annotations

from typing import Any

from shared.controlplane import ControlPlane

__all__ = ["instance_record", "note_activity", "note_ready", "note_start_requested"]

KIND = "instance"


def instance_record(cp: ControlPlane, instance_id: str) -> dict[str, Any]:
    return cp.store.get_record(KIND, instance_id) or {}


def _update(cp: ControlPlane, instance_id: str, **fields: Any) -> None:
    record = instance_record(cp, instance_id)
    record.update(fields)
    cp.store.put_record(KIND, instance_id, record)


def note_start_requested(cp: ControlPlane, instance_id: str) -> None:
    now = cp.clock.now()
    _update(cp, instance_id, start_requested_at=now, last_activity_at=now, ready_at=None)


def note_ready(cp: ControlPlane, instance_id: str) -> None:
    _update(cp, instance_id, ready_at=cp.clock.now())


def note_activity(cp: ControlPlane, instance_id: str) -> None:
    _update(cp, instance_id, last_activity_at=cp.clock.now())
