"""The logical box's state document: which Vast instance backs it, pending rentals, and what we saw.

One JSON document per logical box, changed only through :meth:`apply` (a function that edits the
document and returns a value), so every caller sees the same box:

- :class:`StoreStateDocument`, the control plane's: the store record ``vast_box/<logical id>``, changed
  by compare-and-set, so every functions instance shares one rental intent (a create is never sent
  twice for one box, whichever instance asks);
- :class:`StateFile`, for tools without a store: ``<state_dir>/vast-<logical id>.json`` under ``flock``,
  shared by the processes of one host.

Its ``records`` hold a :class:`VastInstanceRecord`-shaped dict per instance seen, for cost accounting:
$/h and when it ran, stopped, died.
"""

from __future__ import annotations

import contextlib
import copy
import fcntl
import json
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

from pydantic import BaseModel, Field

from shared.models import InstanceState

if TYPE_CHECKING:
    from shared.store.base import JobStore

__all__ = ["STATE_KIND", "StateDocument", "StateFile", "StoreStateDocument", "VastInstanceRecord", "note", "trim"]

T = TypeVar("T")
STATE_KIND = "vast_box"

_MAX_RECORDS = 200
_MAX_TRANSITIONS = 100


class VastInstanceRecord(BaseModel):
    """What we saw of one Vast instance, for cost accounting: $/h and when it ran, stopped, died."""

    id: int
    logical_id: str | None = None
    label: str | None = None
    price_per_hour: float = 0.0
    state: InstanceState = InstanceState.STARTING
    gpu_name: str | None = None
    machine_id: int | None = None
    offer_id: int | None = None
    created_at: float | None = None
    first_seen_at: float
    last_seen_at: float
    running_since: float | None = None
    running_s: float = 0.0
    stopped_at: float | None = None
    destroyed_at: float | None = None
    replaced_by: int | None = None
    rental_token: str | None = None  # GPUQ_VAST_INTENT of a box this provider rented
    transitions: list[tuple[float, str]] = Field(default_factory=list)


def note(
    records: dict[str, Any],
    vid: int,
    now: float,
    state: InstanceState,
    row: Mapping[str, Any] | None,
    logical_id: str | None = None,
) -> dict[str, Any]:
    """Fold one observation into the record of ``vid`` (created on first sight)."""
    rec: dict[str, Any] = records.setdefault(
        str(vid), {"id": vid, "first_seen_at": now, "last_seen_at": now, "state": None, "transitions": []}
    )
    rec["last_seen_at"] = now
    if logical_id:
        rec["logical_id"] = logical_id
    if row is not None:
        _fold_row(rec, row)
    if rec.get("state") != state.value:
        _fold_transition(rec, now, state)
    return rec


def _fold_row(rec: dict[str, Any], row: Mapping[str, Any]) -> None:
    rec["label"] = row.get("label")
    if row.get("dph_total") is not None:
        rec["price_per_hour"] = float(row["dph_total"])
    rec["gpu_name"] = row.get("gpu_name") or rec.get("gpu_name")
    rec["machine_id"] = row.get("machine_id") or rec.get("machine_id")
    if row.get("start_date"):
        rec["created_at"] = float(row["start_date"])


def _fold_transition(rec: dict[str, Any], now: float, state: InstanceState) -> None:
    previous = rec.get("state")
    rec["state"] = state.value
    rec["transitions"] = [*rec.get("transitions", []), [now, state.value]][-_MAX_TRANSITIONS:]
    if previous == InstanceState.RUNNING.value and rec.get("running_since"):
        rec["running_s"] = float(rec.get("running_s", 0.0)) + max(0.0, now - float(rec["running_since"]))
        rec["running_since"] = None
    if state is InstanceState.RUNNING:
        rec["running_since"] = now
    if state is InstanceState.STOPPED:
        rec["stopped_at"] = rec.get("stopped_at") or now
    elif state is not InstanceState.GONE:
        rec["stopped_at"] = None
    if state is InstanceState.GONE:
        rec["destroyed_at"] = rec.get("destroyed_at") or now


def trim(records: dict[str, Any]) -> None:
    """Forget the oldest destroyed instances once there are more than ``_MAX_RECORDS``."""
    if len(records) <= _MAX_RECORDS:
        return
    gone = sorted((r for r in records.values() if r.get("destroyed_at")), key=lambda r: r["destroyed_at"])
    for rec in gone[: len(records) - _MAX_RECORDS]:
        records.pop(str(rec["id"]), None)


class StateDocument(Protocol):
    def apply(self, fn: Callable[[dict[str, Any]], T]) -> T:
        """Run ``fn`` on the document atomically (it may run again on a lost race: no side effects)."""
        ...


class StoreStateDocument:
    """The document as a store record, written by compare-and-set (never held across a network call)."""

    def __init__(self, store: JobStore, logical_id: str) -> None:
        self._store = store
        self._key = logical_id

    def apply(self, fn: Callable[[dict[str, Any]], T]) -> T:
        result: list[T] = []

        def mutate(current: dict[str, Any] | None) -> dict[str, Any] | None:
            data = copy.deepcopy(current or {})
            result[:] = [fn(data)]
            return data if data != (current or {}) else None

        self._store.modify_record(STATE_KIND, self._key, mutate)
        return result[0]


class StateFile:
    """A JSON document guarded by ``flock`` (short critical sections: never held across a network call)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)

    @contextlib.contextmanager
    def transaction(self) -> Iterator[dict[str, Any]]:
        with open(self.path.with_suffix(".lock"), "a+") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            data: dict[str, Any] = json.loads(self.path.read_text()) if self.path.exists() else {}
            before = json.dumps(data, sort_keys=True)
            yield data
            if json.dumps(data, sort_keys=True) != before:
                tmp = self.path.with_suffix(".tmp")
                tmp.write_text(json.dumps(data, indent=1, sort_keys=True))
                tmp.replace(self.path)

    def apply(self, fn: Callable[[dict[str, Any]], T]) -> T:
        with self.transaction() as data:
            return fn(data)
