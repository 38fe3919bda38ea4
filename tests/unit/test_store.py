"""The SQLite store's contract: conditional writes, idempotency claims, chunk de-duplication."""

from __future__ import annotations

import contextlib
import threading
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from shared.errors import Conflict, InvalidTransition
from shared.models import Job
from shared.states import JobStatus, check_transition
from shared.store import Chunk, IdempotencyClaim, SqliteJobStore


def make_job(job_id: str = "job_1", **fields: object) -> Job:
    base: dict[str, object] = {"id": job_id, "owner": "alice", "model": "m", "prompt": "p", "max_queue_s": 60,
                               "timeout_s": 60, "queued_at": 1000.0}
    base.update(fields)
    return Job.model_validate(base)


@pytest.fixture
def store(tmp_path: Path) -> SqliteJobStore:
    s = SqliteJobStore(tmp_path / "jobs.db")
    yield s
    s.close()


def move(target: JobStatus):  # type: ignore[no-untyped-def]
    def mutate(job: Job) -> Job:
        check_transition(job.status, target)
        job.status = target
        return job

    return mutate


def test_a_duplicate_terminal_transition_is_refused_not_applied_twice(store: SqliteJobStore) -> None:
    store.create(make_job(), None)
    store.modify("job_1", move(JobStatus.RUNNING))
    done = store.modify("job_1", move(JobStatus.SUCCEEDED))
    assert done is not None and done.status is JobStatus.SUCCEEDED and done.version == 2
    with pytest.raises(InvalidTransition):
        store.modify("job_1", move(JobStatus.SUCCEEDED))
    again = store.get("job_1")
    assert again is not None and again.version == 2


def test_concurrent_writers_each_apply_exactly_once(store: SqliteJobStore) -> None:
    store.create(make_job(), None)

    def bump(job: Job) -> Job:
        job.attempt += 1
        return job

    threads = [threading.Thread(target=lambda: [store.modify("job_1", bump) for _ in range(25)]) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    final = store.get("job_1")
    assert final is not None and final.attempt == 100 and final.version == 100


def test_only_one_of_two_racing_transitions_wins(store: SqliteJobStore) -> None:
    store.create(make_job(), None)
    results: list[str] = []
    barrier = threading.Barrier(2)

    def finish(target: JobStatus) -> None:
        barrier.wait()
        try:
            store.modify("job_1", move(target))
            results.append(target.value)
        except InvalidTransition:
            results.append("refused")

    threads = [threading.Thread(target=finish, args=(t,)) for t in (JobStatus.CANCELLED, JobStatus.EXPIRED)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(results).count("refused") == 1
    job = store.get("job_1")
    assert job is not None and job.status.value in results


def test_idempotency_same_body_same_job_other_body_conflict(store: SqliteJobStore) -> None:
    claim = IdempotencyClaim("alice", "k1", "hash-a")
    first, created = store.create(make_job("job_a"), claim)
    again, created_again = store.create(make_job("job_b"), claim)
    assert created and not created_again and again.id == first.id == "job_a"
    with pytest.raises(Conflict):
        store.create(make_job("job_c"), IdempotencyClaim("alice", "k1", "hash-b"))
    other_owner, created_other = store.create(make_job("job_d", owner="bob"), IdempotencyClaim("bob", "k1", "x"))
    assert created_other and other_owner.id == "job_d"
    assert store.get("job_b") is None and store.get("job_c") is None


def test_chunks_are_stored_once_and_read_in_order(store: SqliteJobStore) -> None:
    store.create(make_job(), None)
    assert store.append_chunks("job_1", [Chunk(1, 1, "b"), Chunk(1, 0, "a")]) == 2
    assert store.append_chunks("job_1", [Chunk(1, 1, "b-again"), Chunk(1, 2, "c")]) == 1
    assert [c.text for c in store.read_chunks("job_1", 1)] == ["a", "b", "c"]
    assert [c.text for c in store.read_chunks("job_1", 1, after_seq=0)] == ["b", "c"]
    assert store.read_chunks("job_1", 2) == []


def test_list_by_status_oldest_first(store: SqliteJobStore) -> None:
    store.create(make_job("job_new", queued_at=2000.0), None)
    store.create(make_job("job_old", queued_at=1000.0), None)
    store.create(make_job("job_done", status=JobStatus.SUCCEEDED), None)
    assert [j.id for j in store.list_by_status([JobStatus.QUEUED])] == ["job_old", "job_new"]


@settings(max_examples=60, deadline=None)
@given(st.lists(st.sampled_from(list(JobStatus)), max_size=12))
def test_random_transition_sequences_never_leave_a_terminal_status(path_targets: list[JobStatus]) -> None:
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        store = SqliteJobStore(Path(tmp) / "s.db")
        store.create(make_job(), None)
        seen_terminal: JobStatus | None = None
        for target in path_targets:
            with contextlib.suppress(InvalidTransition):
                store.modify("job_1", move(target))
            status = store.get("job_1").status  # type: ignore[union-attr]
            if seen_terminal is not None:
                assert status is seen_terminal
            elif status.is_terminal():
                seen_terminal = status
        store.close()
