"""The store contract runs on every backend: SQLite always, Firestore on the real emulator.

The emulator starts once per session (only if a Firestore test is collected) and every test starts
from an empty database. Without the emulator binary the Firestore tests are *skipped* with the reason,
never passed.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from shared.store.base import JobStore
from tests.contract.emulator import FirestoreEmulator

PROJECT = "gpuq-contract"


@dataclass
class Backend:
    name: str
    open: Callable[[], JobStore]
    reset: Callable[[], None]


def _sqlite_backend(path: Path) -> Backend:
    from shared.store.sqlite import SqliteJobStore

    def reset() -> None:
        if path.exists():
            with sqlite3.connect(path) as db:
                db.executescript(
                    "DELETE FROM jobs; DELETE FROM chunks; DELETE FROM records; DELETE FROM nonces; DELETE FROM events;"
                )

    return Backend("sqlite", lambda: SqliteJobStore(path), reset)


def _firestore_backend(emulator: FirestoreEmulator, monkeypatch: pytest.MonkeyPatch) -> Backend:
    from shared.store.firestore import FirestoreJobStore

    # The Google client reads this when a client is built; monkeypatch removes it after the test.
    monkeypatch.setenv("FIRESTORE_EMULATOR_HOST", emulator.host)
    return Backend("firestore", lambda: FirestoreJobStore.connect(project=PROJECT), lambda: emulator.reset(PROJECT))


@pytest.fixture(params=["sqlite", "firestore"])
def backend(request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Backend:
    if request.param == "sqlite":
        chosen = _sqlite_backend(tmp_path / "jobs.db")
    else:
        chosen = _firestore_backend(request.getfixturevalue("firestore_emulator"), monkeypatch)
    chosen.reset()
    return chosen


@pytest.fixture
def store(backend: Backend) -> Iterator[JobStore]:
    opened = backend.open()
    yield opened
    opened.close()
