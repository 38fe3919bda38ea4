"""The store's event log (``append_event`` / ``list_events``) on both backends: insert-if-absent on the
idempotency key, the store's own order across connections (as separate functions instances write), pages
followed by cursor without loss or repetition, type and subject filters, and a refused foreign cursor."""

from __future__ import annotations

import threading

import pytest

from shared.errors import InvalidRequest
from shared.observability.events import envelope
from shared.store.base import JobStore
from tests.contract.conftest import Backend

KEEP_S = 3600.0


def _event(event_type: str, subject: str, occurrence: str = "", **data: object) -> dict[str, object]:
    return envelope(event_type, subject, dict(data), occurrence=occurrence, source="test", now=1000.0)


def _all(store: JobStore, **filters: object) -> list[dict[str, object]]:
    """Every event, following ``next`` a page of 2 at a time."""
    seen: list[dict[str, object]] = []
    after = None
    for _ in range(100):
        page = store.list_events(after=after, limit=2, **filters)  # type: ignore[arg-type]
        seen += page.events
        assert page.next  # always a position to continue from
        if not page.has_more:
            again = store.list_events(after=page.next, limit=2, **filters)  # type: ignore[arg-type]
            assert again.events == [] and again.next == page.next  # nothing new: the same position
            return seen
        after = page.next
    raise AssertionError("pages never ended")


def test_an_event_is_kept_once_per_idempotency_key(backend: Backend) -> None:
    first, second = backend.open(), backend.open()
    try:
        event = _event("job.queued", "job_a", model="m")
        assert first.append_event(event, now=1000.0, keep_s=KEEP_S)
        again = {**event, "data": {"model": "other"}}  # a re-run announces the same change again
        assert not second.append_event(again, now=1001.0, keep_s=KEEP_S)
        assert _all(second) == [event]
    finally:
        first.close()
        second.close()


def test_events_come_back_in_the_order_they_were_written_across_connections(backend: Backend) -> None:
    stores = [backend.open(), backend.open()]
    try:
        written = []
        for i in range(7):  # alternating writers: the order is the store's, not either connection's
            event = _event("job.started", f"job_{i % 3}", occurrence=str(i), i=i)
            assert stores[i % 2].append_event(event, now=1000.0 + i, keep_s=KEEP_S)
            written.append(event)
        assert _all(stores[0]) == written
        assert _all(stores[1], subject="job_1") == [e for e in written if e["subject"] == "job_1"]
    finally:
        for store in stores:
            store.close()


def test_concurrent_writers_lose_nothing_and_each_writers_events_keep_their_order(backend: Backend) -> None:
    stores = [backend.open() for _ in range(3)]
    try:

        def write(n: int) -> None:
            for i in range(8):
                stores[n].append_event(_event("job.output", f"job_{n}", occurrence=str(i), i=i), now=1000.0, keep_s=9)

        threads = [threading.Thread(target=write, args=(n,)) for n in range(3)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        seen = _all(stores[0])
        assert len(seen) == 24
        for n in range(3):  # causal order per subject: each writer wrote its subject's events one after another
            assert [e["data"]["i"] for e in seen if e["subject"] == f"job_{n}"] == list(range(8))  # type: ignore[index]
    finally:
        for store in stores:
            store.close()


def test_type_filters_take_exact_types_and_prefixes(backend: Backend) -> None:
    store = backend.open()
    try:
        kinds = ["job.queued", "instance.start_requested", "job.failed", "cost.session_closed", "instance.ready"]
        for i, kind in enumerate(kinds):
            store.append_event(_event(kind, f"s{i}"), now=1000.0, keep_s=KEEP_S)
        assert [e["type"] for e in _all(store, types=("instance.", "job.failed"))] == [
            "instance.start_requested",
            "job.failed",
            "instance.ready",
        ]
        assert [e["type"] for e in _all(store, types=("cost.",))] == ["cost.session_closed"]
        assert _all(store, types=("health.",)) == []
        assert [e["subject"] for e in _all(store, types=("instance.",), subject="s4")] == ["s4"]
    finally:
        store.close()


def test_a_page_says_whether_more_follow(backend: Backend) -> None:
    store = backend.open()
    try:
        for i in range(3):
            store.append_event(_event("job.queued", f"j{i}"), now=1000.0, keep_s=KEEP_S)
        page = store.list_events(after=None, limit=3)
        assert len(page.events) == 3 and not page.has_more
        first = store.list_events(after=None, limit=1)
        assert first.has_more and [e["subject"] for e in first.events] == ["j0"]
        empty = store.list_events(after=page.next, limit=5)
        assert empty.events == [] and not empty.has_more and empty.next == page.next
    finally:
        store.close()


@pytest.mark.parametrize("position", ["x", "-1", "1.2.3", "9" * 40, "123456789.12345678.abc"])
def test_a_position_the_store_never_gave_is_refused(backend: Backend, position: str) -> None:
    store = backend.open()
    try:
        with pytest.raises(InvalidRequest) as refused:
            store.list_events(after=position)
        assert refused.value.code == "invalid_cursor"
    finally:
        store.close()
