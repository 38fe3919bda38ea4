"""The job store contract for small records (box registry, sessions, counters), on every backend
(see ``conftest.py``): they round-trip, overwrite, stay apart by kind, and list with their keys.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

from shared.store.base import JobStore
from tests.contract.conftest import Backend


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


# --- compare-and-set on records (coordination state shared by functions instances) -------------------
def test_modify_record_creates_changes_and_refuses_as_its_mutation_decides(store: JobStore) -> None:
    assert store.modify_record("box", "b1", lambda cur: None) == (None, False)
    assert store.modify_record("box", "b1", lambda cur: {"n": 1} if cur is None else None) == ({"n": 1}, True)
    assert store.modify_record("box", "b1", lambda cur: {"n": 2} if cur is None else None) == ({"n": 1}, False)
    assert store.modify_record("box", "b1", lambda cur: {"n": (cur or {})["n"] + 1}) == ({"n": 2}, True)
    assert store.get_record("box", "b1") == {"n": 2}
    store.delete_record("box", "b1")
    assert store.get_record("box", "b1") is None


def test_racing_modifications_of_one_record_are_all_applied_once(store: JobStore, backend: Backend) -> None:
    """Four writers, each with its own connection (as separate functions instances have), increment one
    counter 25 times each: compare-and-set loses no increment and applies none twice."""
    stores = [backend.open() for _ in range(4)]

    def bump(one: JobStore) -> None:
        for _ in range(25):
            one.modify_record("counter", "c", lambda cur: {"n": (cur or {"n": 0})["n"] + 1})

    with ThreadPoolExecutor(4) as pool:
        list(pool.map(bump, stores))
    for one in stores:
        one.close()
    assert store.get_record("counter", "c") == {"n": 100}


def test_of_racing_creates_of_one_record_exactly_one_wins(store: JobStore, backend: Backend) -> None:
    stores = [backend.open() for _ in range(4)]

    def claim(pair: tuple[int, JobStore]) -> bool:
        who, one = pair
        return one.modify_record("nonce", "n-1", lambda cur: {"by": who} if cur is None else None)[1]

    with ThreadPoolExecutor(4) as pool:
        won = list(pool.map(claim, enumerate(stores)))
    for one in stores:
        one.close()
    assert won.count(True) == 1
    assert store.get_record("nonce", "n-1") == {"by": won.index(True)}
