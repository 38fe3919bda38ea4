"""The job store interface every backend implements (SQLite here, Firestore in production).

All writes are conditional: :meth:`JobStore.modify` reads a job, lets a function change a copy,
and writes it back only if nobody wrote in between (a version compare-and-set), retrying the read
on a lost race. The function decides from the fresh state, so a duplicate event re-checked
against the newer state is refused instead of applied twice.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from shared.models import Job
from shared.states import JobStatus

__all__ = ["Chunk", "EventPage", "IdempotencyClaim", "JobStore", "Mutation", "RecordMutation"]

Mutation = Callable[[Job], Job | None]
"""Gets a copy of the job; returns the changed copy, or ``None`` to write nothing."""

RecordMutation = Callable[[dict[str, Any] | None], dict[str, Any] | None]
"""Gets a copy of a record (``None`` when there is none); returns its new value, or ``None`` to write nothing."""


@dataclass(frozen=True, slots=True)
class IdempotencyClaim:
    owner: str
    key: str
    request_hash: str


@dataclass(frozen=True, slots=True)
class Chunk:
    attempt: int
    seq: int
    text: str


@dataclass(frozen=True, slots=True)
class EventPage:
    """Events in store order (oldest first) and the position after the last one the store looked at.

    ``next`` is the store's own position token (``shared.observability.event_log`` wraps it into the
    opaque cursor clients see); passed back as ``after`` it continues where this page ended.
    """

    events: list[dict[str, Any]]
    next: str
    has_more: bool


class JobStore(Protocol):
    def create(self, job: Job, claim: IdempotencyClaim | None) -> tuple[Job, bool]:
        """Store a new job; with a claim, return the existing job instead when the owner's key was used.

        Returns ``(job, created)``. Raises :class:`~shared.errors.Conflict` when the key was used
        with a different request.
        """
        ...

    def get(self, job_id: str) -> Job | None: ...

    def modify(self, job_id: str, mutate: Mutation) -> Job | None:
        """Apply ``mutate`` atomically (compare-and-set on ``version``). Returns the stored job.

        Errors raised by ``mutate`` (e.g. :class:`~shared.errors.InvalidTransition`) propagate
        and nothing is written. Returns ``None`` if the job does not exist.
        """
        ...

    def delete(self, job_id: str) -> None: ...

    def list_by_status(
        self,
        statuses: Iterable[JobStatus],
        *,
        limit: int = 1000,
        finished_before: float | None = None,
        with_pending_callbacks: bool = False,
    ) -> list[Job]:
        """Oldest first. Optionally only jobs finished before a time, or with callback events not yet tried."""
        ...

    def append_chunks(self, job_id: str, chunks: Iterable[Chunk]) -> int:
        """Insert chunks, ignoring any (attempt, seq) already stored. Returns how many were new."""
        ...

    def read_chunks(self, job_id: str, attempt: int, after_seq: int = -1) -> list[Chunk]: ...

    def get_record(self, kind: str, key: str) -> dict[str, Any] | None:
        """Small documents (instances, counters) keyed by kind and key."""
        ...

    def put_record(self, kind: str, key: str, value: dict[str, Any]) -> None: ...

    def modify_record(self, kind: str, key: str, mutate: RecordMutation) -> tuple[dict[str, Any] | None, bool]:
        """Compare-and-set on one record, like :meth:`modify` on a job: ``mutate`` decides from the
        current value, and its result is written only if nobody wrote in between (else it decides
        again). Returns ``(the stored value, whether this call wrote it)``. Coordination state that
        several functions instances share (box registry, counters, nonces) changes only this way."""
        ...

    def delete_record(self, kind: str, key: str) -> None: ...

    def claim_nonce(self, nonce: str, now: float, window_s: float) -> bool:
        """Remember a signed request's ``nonce``; ``False`` if it was seen within ``window_s`` (a replay).
        One atomic write, so every functions instance sharing the store refuses a replay another saw."""
        ...

    def list_records(self, kind: str) -> list[dict[str, Any]]:
        """Every record of a kind, each with its key as ``id``."""
        ...

    def append_event(self, event: Mapping[str, Any], *, now: float, keep_s: float) -> bool:
        """Keep one event (the envelope of :mod:`shared.observability.events`) unless one with its
        ``idempotency_key`` is kept already: ``False`` then, and nothing is written. The store assigns
        the event's place in its order (SQLite: an autoincrement; Firestore: the commit time), so an
        event written after another was written sorts after it, whichever process wrote each. It may
        forget the event ``keep_s`` after ``now`` (the writer's clock)."""
        ...

    def list_events(
        self, *, after: str | None, types: Sequence[str] = (), subject: str | None = None, limit: int = 100
    ) -> EventPage:
        """Events after position ``after`` (``None``: from the oldest kept), oldest first, at most
        ``limit``. ``types`` holds exact types and prefixes ending in ``.`` (any matches; empty: all).
        Raises :class:`~shared.errors.InvalidRequest` (``invalid_cursor``) for a position it never gave."""
        ...

    def close(self) -> None: ...
