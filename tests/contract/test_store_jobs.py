"""The job store contract for jobs, run unchanged on every backend (see ``conftest.py``): a job round-trips,
writes are conditional and see a copy, a second store on the backend sees every write, and a
creation with an idempotency key makes one job per key.
"""

from __future__ import annotations

import pytest

from shared.errors import Conflict, InvalidTransition
from shared.models import CallbackState, ChatMessage, Job, JobResult
from shared.states import JobStatus
from shared.store.base import Chunk, IdempotencyClaim, JobStore
from tests.contract.conftest import Backend
from tests.contract.sample_jobs import make_job, move


# --- jobs ----------------------------------------------------------------------------------------------
def test_a_job_round_trips_with_every_field(store: JobStore) -> None:
    job = make_job(
        prompt=None,
        messages=[ChatMessage(role="user", content='héllo ✓ \u0000 "quoted"')],
        options={"temperature": 0.2, "stop": [["a", 1], []], "nested": {"__name__": None, "a/b": [1.5, True]}},
        metadata={"k": "v", "n": 3},
        callback_url="https://example.com/hook",
        callback=CallbackState(pending=["evt_1"]),
        result=JobResult(eval_count=7),
        idempotency_key="k",
    )
    stored, created = store.create(job, None)
    assert created and stored == job
    assert store.get("job_1") == job


def test_missing_jobs_read_as_none_and_delete_is_a_no_op(store: JobStore) -> None:
    assert store.get("job_nope") is None
    assert store.modify("job_nope", move(JobStatus.RUNNING)) is None
    store.delete("job_nope")
    assert store.read_chunks("job_nope", 1) == []


def test_a_duplicate_terminal_transition_is_refused_not_applied_twice(store: JobStore) -> None:
    store.create(make_job(), None)
    store.modify("job_1", move(JobStatus.RUNNING))
    done = store.modify("job_1", move(JobStatus.SUCCEEDED))
    assert done is not None and done.status is JobStatus.SUCCEEDED and done.version == 2
    with pytest.raises(InvalidTransition):
        store.modify("job_1", move(JobStatus.SUCCEEDED))
    again = store.get("job_1")
    assert again is not None and again.version == 2


def test_a_mutation_that_returns_none_writes_nothing(store: JobStore) -> None:
    store.create(make_job(), None)
    seen: list[Job] = []

    def look(job: Job) -> None:
        seen.append(job)
        job.status_reason = "scribbled on the copy"
        return None

    result = store.modify("job_1", look)
    assert result is not None and result.version == 0 and result.status_reason == "waiting_for_dispatch"
    assert store.get("job_1") == make_job()
    assert len(seen) == 1


def test_an_error_in_mutate_propagates_and_nothing_is_written(store: JobStore) -> None:
    store.create(make_job(), None)

    def explode(job: Job) -> Job:
        job.attempt = 99
        raise ValueError("boom")

    with pytest.raises(ValueError, match="boom"):
        store.modify("job_1", explode)
    assert store.get("job_1") == make_job()


def test_the_mutate_function_sees_a_copy_not_the_stored_job(store: JobStore) -> None:
    store.create(make_job(), None)
    first = store.modify("job_1", move(JobStatus.STARTING, status_reason="provisioning_instance"))
    assert first is not None
    second = store.modify("job_1", move(JobStatus.RUNNING, instance_id="box-1"))
    assert first.status is JobStatus.STARTING and first.instance_id is None and first.version == 1
    assert second is not None and second.version == 2 and second.status_reason == "provisioning_instance"


def test_a_second_store_on_the_same_backend_sees_every_write(backend: Backend) -> None:
    """Function instances are separate processes: each opens its own store on the shared backend."""
    writer, reader = backend.open(), backend.open()
    try:
        writer.create(make_job(), IdempotencyClaim("alice", "k", "h"))
        writer.modify("job_1", move(JobStatus.RUNNING))
        writer.append_chunks("job_1", [Chunk(1, 0, "x")])
        writer.put_record("instance", "box-1", {"last_activity_at": 5.0})
        got = reader.get("job_1")
        assert got is not None and got.status is JobStatus.RUNNING and got.version == 1
        assert reader.read_chunks("job_1", 1) == [Chunk(1, 0, "x")]
        assert reader.get_record("instance", "box-1") == {"last_activity_at": 5.0}
        assert reader.create(make_job("job_2"), IdempotencyClaim("alice", "k", "h")) == (got, False)
    finally:
        writer.close()
        reader.close()


# --- idempotency ---------------------------------------------------------------------------------------
def test_idempotency_same_body_same_job_other_body_conflict(store: JobStore) -> None:
    claim = IdempotencyClaim("alice", "k1", "hash-a")
    first, created = store.create(make_job("job_a"), claim)
    again, created_again = store.create(make_job("job_b"), claim)
    assert created and not created_again and again.id == first.id == "job_a"
    with pytest.raises(Conflict):
        store.create(make_job("job_c"), IdempotencyClaim("alice", "k1", "hash-b"))
    other_owner, created_other = store.create(make_job("job_d", owner="bob"), IdempotencyClaim("bob", "k1", "x"))
    assert created_other and other_owner.id == "job_d"
    assert store.get("job_b") is None and store.get("job_c") is None


def test_the_existing_job_is_returned_as_it_is_now(store: JobStore) -> None:
    claim = IdempotencyClaim("alice", "k/with/slashes and spaces ✓", "h")
    store.create(make_job("job_a"), claim)
    store.modify("job_a", move(JobStatus.RUNNING))
    again, created = store.create(make_job("job_b"), claim)
    assert not created and again.status is JobStatus.RUNNING and again.version == 1


def test_deleting_a_job_frees_its_key_and_drops_its_chunks(store: JobStore) -> None:
    claim = IdempotencyClaim("alice", "k1", "hash-a")
    store.create(make_job("job_a"), claim)
    store.append_chunks("job_a", [Chunk(1, 0, "a"), Chunk(1, 1, "b")])
    store.delete("job_a")
    assert store.get("job_a") is None and store.read_chunks("job_a", 1) == []
    fresh, created = store.create(make_job("job_b"), IdempotencyClaim("alice", "k1", "hash-other"))
    assert created and fresh.id == "job_b"
