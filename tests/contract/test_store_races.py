"""The job store contract under concurrency, on every backend (see ``conftest.py``): racing writers,
creates and reports each take effect exactly once, and a writer that always loses gives up cleanly.
"""

from __future__ import annotations

import threading
from collections.abc import Callable

import pytest

from shared.errors import InvalidTransition, StaleWrite
from shared.models import Job
from shared.states import JobStatus
from shared.store.base import Chunk, IdempotencyClaim, JobStore
from tests.contract.conftest import Backend
from tests.contract.sample_jobs import make_job, move


def run_threads(count: int, target: Callable[[int], None]) -> None:
    errors: list[BaseException] = []

    def guarded(index: int) -> None:
        try:
            target(index)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=guarded, args=(i,)) for i in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert not any(t.is_alive() for t in threads), "a writer thread hung"
    if errors:
        raise errors[0]


# --- conditional writes under concurrency --------------------------------------------------------------
def test_a_writer_that_always_loses_the_race_gives_up_without_overwriting(backend: Backend) -> None:
    store, rival = backend.open(), backend.open()
    try:
        store.create(make_job(), None)
        calls = 0

        def interfered(job: Job) -> Job:
            nonlocal calls
            calls += 1
            rival.modify("job_1", lambda j: j.model_copy(update={"dispatch_seq": j.dispatch_seq + 1}))
            job.status_reason = "loser"
            return job

        with pytest.raises(StaleWrite):
            store.modify("job_1", interfered)
        final = store.get("job_1")
        assert final is not None and final.status_reason == "waiting_for_dispatch"
        assert final.dispatch_seq == calls == final.version and calls > 1
    finally:
        store.close()
        rival.close()


def test_concurrent_writers_each_apply_exactly_once(store: JobStore) -> None:
    store.create(make_job(), None)

    def bump(job: Job) -> Job:
        job.attempt += 1
        return job

    def writer(_: int) -> None:
        for _ in range(25):
            store.modify("job_1", bump)

    run_threads(4, writer)
    final = store.get("job_1")
    assert final is not None and final.attempt == 100 and final.version == 100


def test_only_one_of_two_racing_transitions_wins(store: JobStore) -> None:
    store.create(make_job(), None)
    results: list[str] = []
    barrier = threading.Barrier(2)
    targets = (JobStatus.CANCELLED, JobStatus.EXPIRED)

    def finish(index: int) -> None:
        barrier.wait()
        try:
            store.modify("job_1", move(targets[index]))
            results.append(targets[index].value)
        except InvalidTransition:
            results.append("refused")

    run_threads(2, finish)
    assert sorted(results).count("refused") == 1
    job = store.get("job_1")
    assert job is not None and job.status.value in results and job.version == 1


# --- idempotency ---------------------------------------------------------------------------------------
def test_racing_creates_with_one_key_make_exactly_one_job(store: JobStore) -> None:
    claim = IdempotencyClaim("alice", "race", "h")
    results: list[tuple[str, bool]] = []
    barrier = threading.Barrier(6)

    def submit(index: int) -> None:
        barrier.wait()
        job, created = store.create(make_job(f"job_{index}"), claim)
        results.append((job.id, created))

    run_threads(6, submit)
    assert sum(created for _, created in results) == 1
    winner = next(job_id for job_id, created in results if created)
    assert {job_id for job_id, _ in results} == {winner}
    assert [j.id for j in store.list_by_status(list(JobStatus))] == [winner]


# --- chunks --------------------------------------------------------------------------------------------
def test_racing_duplicate_reports_store_each_chunk_once(store: JobStore) -> None:
    store.create(make_job(), None)
    counts: list[int] = []
    barrier = threading.Barrier(4)

    def report(index: int) -> None:
        barrier.wait()
        window = range(index * 10, index * 10 + 30)  # each report overlaps the next one's
        counts.append(store.append_chunks("job_1", [Chunk(1, seq, f"t{seq}") for seq in window]))

    run_threads(4, report)
    assert sum(counts) == 60
    assert store.read_chunks("job_1", 1) == [Chunk(1, seq, f"t{seq}") for seq in range(60)]
