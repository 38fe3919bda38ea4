"""The job store contract, run unchanged on every backend (see ``conftest.py``).

Conditional writes, idempotency claims, chunk de-duplication, small records, listing — and the two
ways a contract is usually broken: racing threads, and long random sequences of calls checked against
a model of what the store must hold.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule, run_state_machine_as_test

from shared.errors import Conflict, InvalidTransition, StaleWrite
from shared.models import CallbackState, ChatMessage, Job, JobResult
from shared.states import ALLOWED, JobStatus, check_transition
from shared.store.base import Chunk, IdempotencyClaim, JobStore
from tests.contract.conftest import Backend


def make_job(job_id: str = "job_1", **fields: object) -> Job:
    base: dict[str, object] = {
        "id": job_id,
        "owner": "alice",
        "model": "m",
        "prompt": "p",
        "max_queue_s": 60,
        "timeout_s": 60,
        "queued_at": 1000.0,
    }
    base.update(fields)
    return Job.model_validate(base)


def move(target: JobStatus, **extra: object) -> Callable[[Job], Job]:
    def mutate(job: Job) -> Job:
        check_transition(job.status, target)
        job.status = target
        for name, value in extra.items():
            setattr(job, name, value)
        return job

    return mutate


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


# --- jobs -------------------------------------------------------------------------------------------
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


# --- idempotency ------------------------------------------------------------------------------------
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


# --- conditional writes under concurrency -----------------------------------------------------------
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


# --- chunks -----------------------------------------------------------------------------------------
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


# --- listing ----------------------------------------------------------------------------------------
def test_list_by_status_oldest_first(store: JobStore) -> None:
    store.create(make_job("job_new", queued_at=2000.0), None)
    store.create(make_job("job_old", queued_at=1000.0), None)
    store.create(make_job("job_done", status=JobStatus.SUCCEEDED), None)
    store.create(make_job("job_mid", queued_at=1500.0, status=JobStatus.STARTING), None)
    assert [j.id for j in store.list_by_status([JobStatus.QUEUED])] == ["job_old", "job_new"]
    assert [j.id for j in store.list_by_status([JobStatus.QUEUED, JobStatus.STARTING])] == [
        "job_old",
        "job_mid",
        "job_new",
    ]
    assert [j.id for j in store.list_by_status([JobStatus.QUEUED, JobStatus.STARTING], limit=2)] == [
        "job_old",
        "job_mid",
    ]
    assert store.list_by_status([]) == []
    assert store.list_by_status([JobStatus.RUNNING]) == []


def test_list_by_status_follows_transitions(store: JobStore) -> None:
    store.create(make_job("job_a", queued_at=1.0), None)
    store.create(make_job("job_b", queued_at=2.0), None)
    store.modify("job_a", move(JobStatus.RUNNING))
    assert [j.id for j in store.list_by_status([JobStatus.QUEUED])] == ["job_b"]
    running = store.list_by_status([JobStatus.RUNNING])
    assert [(j.id, j.version) for j in running] == [("job_a", 1)]


def test_list_finished_before_with_pending_callbacks(store: JobStore) -> None:
    terminal = [JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.CANCELLED, JobStatus.EXPIRED]
    rows = [  # id, status, finished_at, pending callback events, queued_at
        ("job_old_pending", JobStatus.SUCCEEDED, 100.0, ["e1"], 1.0),
        ("job_old_failed_pending", JobStatus.FAILED, 150.0, ["e2"], 2.0),
        ("job_recent_pending", JobStatus.SUCCEEDED, 900.0, ["e3"], 3.0),
        ("job_old_delivered", JobStatus.SUCCEEDED, 100.0, [], 4.0),
        ("job_running_pending", JobStatus.RUNNING, None, ["e4"], 5.0),
    ]
    for job_id, status, finished_at, pending, queued_at in rows:
        store.create(
            make_job(
                job_id,
                status=status,
                finished_at=finished_at,
                queued_at=queued_at,
                callback=CallbackState(pending=pending),
            ),
            None,
        )
    found = store.list_by_status(terminal, finished_before=500.0, with_pending_callbacks=True)
    assert [j.id for j in found] == ["job_old_pending", "job_old_failed_pending"]
    assert [
        j.id for j in store.list_by_status(terminal, finished_before=500.0, with_pending_callbacks=True, limit=1)
    ] == ["job_old_pending"]
    assert [j.id for j in store.list_by_status(terminal, with_pending_callbacks=True)] == [
        "job_old_pending",
        "job_old_failed_pending",
        "job_recent_pending",
    ]
    assert [j.id for j in store.list_by_status(terminal, finished_before=500.0)] == [
        "job_old_pending",
        "job_old_failed_pending",
        "job_old_delivered",
    ]
    # Delivering the pending event takes the job off the list.
    store.modify("job_old_pending", lambda j: j.model_copy(update={"callback": CallbackState(delivered=["e1"])}))
    assert [j.id for j in store.list_by_status(terminal, finished_before=500.0, with_pending_callbacks=True)] == [
        "job_old_failed_pending"
    ]


# --- small records ----------------------------------------------------------------------------------
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


# --- random sequences against a model ---------------------------------------------------------------
@dataclass
class ModelJob:
    owner: str
    queued_at: float
    status: JobStatus = JobStatus.QUEUED
    version: int = 0
    claim: tuple[str, str] | None = None
    chunks: dict[tuple[int, int], str] = field(default_factory=dict)


class StoreMachine(RuleBasedStateMachine):
    """Random calls; after each one the store must agree with a plain-dict model of the contract."""

    def __init__(self, backend: Backend, store: JobStore) -> None:
        super().__init__()
        backend.reset()
        self.store = store
        self.jobs: dict[str, ModelJob] = {}
        self.claims: dict[tuple[str, str], tuple[str, str]] = {}  # (owner, key) -> (request hash, job id)
        self.created = 0
        self.writes = 0

    def _pick(self, index: int) -> str:
        return sorted(self.jobs)[index % len(self.jobs)]

    def _check(self, job_id: str) -> None:
        stored = self.store.get(job_id)
        model = self.jobs.get(job_id)
        if model is None:
            assert stored is None
            return
        assert stored is not None and (stored.status, stored.version) == (model.status, model.version)
        for attempt in (1, 2):
            expected = [Chunk(a, s, t) for (a, s), t in sorted(model.chunks.items()) if a == attempt]
            assert self.store.read_chunks(job_id, attempt) == expected

    @rule(
        owner=st.sampled_from(["alice", "bob"]),
        key=st.sampled_from([None, "k1", "k2"]),
        body=st.sampled_from(["h1", "h2"]),
    )
    def create(self, owner: str, key: str | None, body: str) -> None:
        self.created += 1
        job_id = f"job_{self.created:03d}"
        claim = IdempotencyClaim(owner, key, body) if key else None
        held = self.claims.get((owner, key)) if key else None
        if held is not None and held[0] != body:
            with pytest.raises(Conflict):
                self.store.create(make_job(job_id, owner=owner, queued_at=float(self.created)), claim)
            assert self.store.get(job_id) is None
            return
        job, created = self.store.create(make_job(job_id, owner=owner, queued_at=float(self.created)), claim)
        if held is not None:
            assert (job.id, created) == (held[1], False)
            return
        assert (job.id, created) == (job_id, True)
        self.jobs[job_id] = ModelJob(owner, float(self.created), claim=(owner, key) if key else None)
        if key:
            self.claims[(owner, key)] = (body, job_id)
        self._check(job_id)

    @precondition(lambda self: self.jobs)
    @rule(index=st.integers(0, 50), status=st.sampled_from(list(JobStatus)))
    def transition(self, index: int, status: JobStatus) -> None:
        target = status
        job_id = self._pick(index)
        model = self.jobs[job_id]
        if target in ALLOWED[model.status]:
            updated = self.store.modify(job_id, move(target))
            model.status, model.version = target, model.version + 1
            assert updated is not None and (updated.status, updated.version) == (target, model.version)
        else:
            with pytest.raises(InvalidTransition):
                self.store.modify(job_id, move(target))
        self._check(job_id)

    @precondition(lambda self: self.jobs)
    @rule(index=st.integers(0, 50))
    def look_without_writing(self, index: int) -> None:
        job_id = self._pick(index)
        result = self.store.modify(job_id, lambda job: None)
        assert result is not None and result.version == self.jobs[job_id].version

    @precondition(lambda self: self.jobs)
    @rule(index=st.integers(0, 50), attempt=st.sampled_from([1, 2]), seqs=st.lists(st.integers(0, 6), max_size=5))
    def append(self, index: int, attempt: int, seqs: list[int]) -> None:
        job_id = self._pick(index)
        model = self.jobs[job_id]
        self.writes += 1
        chunks = [Chunk(attempt, seq, f"{seq}@{self.writes}") for seq in seqs]
        expected_new = 0
        for chunk in chunks:
            if (chunk.attempt, chunk.seq) not in model.chunks:
                model.chunks[(chunk.attempt, chunk.seq)] = chunk.text
                expected_new += 1
        assert self.store.append_chunks(job_id, chunks) == expected_new
        self._check(job_id)

    @precondition(lambda self: self.jobs)
    @rule(index=st.integers(0, 50))
    def delete(self, index: int) -> None:
        job_id = self._pick(index)
        model = self.jobs.pop(job_id)
        if model.claim is not None:
            del self.claims[model.claim]
        self.store.delete(job_id)
        self._check(job_id)

    @invariant()
    def listing_matches(self) -> None:
        if not self.jobs:
            return
        waiting = [JobStatus.QUEUED, JobStatus.STARTING, JobStatus.RUNNING]
        expected = [
            job_id for job_id, m in sorted(self.jobs.items(), key=lambda kv: kv[1].queued_at) if m.status in waiting
        ]
        assert [j.id for j in self.store.list_by_status(waiting)] == expected

    def teardown(self) -> None:
        for job_id in list(self.jobs):
            self._check(job_id)


def test_random_call_sequences_agree_with_the_model(backend: Backend, store: JobStore) -> None:
    """Includes every status path (allowed or not): a terminal job never moves again (ALLOWED is empty)."""

    class OnThisStore(StoreMachine):
        def __init__(self) -> None:
            super().__init__(backend, store)

    run_state_machine_as_test(
        OnThisStore,
        settings=settings(
            max_examples=15, stateful_step_count=20, deadline=None, suppress_health_check=[HealthCheck.too_slow]
        ),
    )
