"""The job store contract for small records (box registry, sessions, counters), on every backend
(see ``conftest.py``): they round-trip, overwrite, stay apart by kind, and list with their keys.
"""

from __future__ import annotations

from shared.store.base import JobStore


# --- small records -------------------------------------------------------------------------------------
def test_records_round_trip_overwrite_and_stay_apart_by_kind(store: JobStore) -> None:
    assert store.get_record("instance", "box-1") is None
    value = {"last_activity_at": 12.5, "n": 3, "nested": {"list": [[1, 2], None]}, "s": "✓"}
    store.put_record("instance", "box-1", value)
    assert store.get_record("instance", "box-1") == value
    store.put_record("instance", "box-1", {"n": 4})
    assert store.get_record("instance", "box-1") == {"n": 4}
    store.put_record("counter", "box-1", {"n": 0})
    store.put_record("instance", "a/b:c %2F", {"odd": True})
    store.put_record("instance", "a", {"short": True})
    assert store.get_record("instance", "box-1") == {"n": 4}
    assert store.get_record("counter", "box-1") == {"n": 0}
    assert store.get_record("instance", "a/b:c %2F") == {"odd": True}
    assert store.get_record("instance", "a") == {"short": True}
    assert store.get_record("instance", "a/b") is None


def test_list_records_returns_every_record_of_a_kind_with_its_key(store: JobStore) -> None:
    assert store.list_records("session") == []
    store.put_record("session", "s-2", {"start_s": 2.0})
    store.put_record("session", "s-1", {"start_s": 1.0, "stop_s": None})
    store.put_record("session", "a/b", {"odd": True})
    store.put_record("instance", "s-3", {"other": "kind"})
    store.put_record("session", "s-2", {"start_s": 2.5})
    assert store.list_records("session") == [
        {"odd": True, "id": "a/b"},
        {"start_s": 1.0, "stop_s": None, "id": "s-1"},
        {"start_s": 2.5, "id": "s-2"},
    ]
    assert store.list_records("instance") == [{"other": "kind", "id": "s-3"}]
