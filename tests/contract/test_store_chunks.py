"""The job store contract for output chunks, on every backend (see ``conftest.py``): each chunk is
stored once, the first copy wins, and reads come back in order, attempt by attempt.
"""

from __future__ import annotations

from shared.store.base import Chunk, JobStore
from tests.contract.sample_jobs import make_job


# --- chunks --------------------------------------------------------------------------------------------
def test_chunks_are_stored_once_and_read_in_order(store: JobStore) -> None:
    store.create(make_job(), None)
    assert store.append_chunks("job_1", [Chunk(1, 1, "b"), Chunk(1, 0, "a")]) == 2
    assert store.append_chunks("job_1", [Chunk(1, 1, "b-again"), Chunk(1, 2, "c")]) == 1
    assert store.append_chunks("job_1", []) == 0
    assert [c.text for c in store.read_chunks("job_1", 1)] == ["a", "b", "c"]
    assert [c.text for c in store.read_chunks("job_1", 1, after_seq=0)] == ["b", "c"]
    assert store.read_chunks("job_1", 1, after_seq=2) == []
    assert store.read_chunks("job_1", 2) == []


def test_attempts_keep_separate_outputs_in_numeric_order(store: JobStore) -> None:
    store.create(make_job(), None)
    store.append_chunks("job_1", [Chunk(2, 0, "second")] + [Chunk(1, seq, f"{seq},") for seq in (10, 2, 9, 1, 0)])
    assert [c.seq for c in store.read_chunks("job_1", 1)] == [0, 1, 2, 9, 10]
    assert store.read_chunks("job_1", 2) == [Chunk(2, 0, "second")]


def test_a_duplicate_inside_one_append_counts_once_and_the_first_wins(store: JobStore) -> None:
    store.create(make_job(), None)
    assert store.append_chunks("job_1", [Chunk(1, 0, "first"), Chunk(1, 0, "second")]) == 1
    assert store.read_chunks("job_1", 1) == [Chunk(1, 0, "first")]


def test_a_long_report_is_stored_whole(store: JobStore) -> None:
    store.create(make_job(), None)
    chunks = [Chunk(1, seq, f"token {seq} ✓ ") for seq in range(1000)]
    assert store.append_chunks("job_1", chunks) == 1000
    assert store.read_chunks("job_1", 1) == chunks
