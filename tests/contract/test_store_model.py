"""The job store contract checked by long random sequences of calls, on every backend (see
``conftest.py``): after each call the store must agree with a plain-dict model of what it must hold.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule, run_state_machine_as_test

from shared.errors import Conflict, InvalidTransition
from shared.states import ALLOWED, JobStatus
from shared.store.base import Chunk, IdempotencyClaim, JobStore
from tests.contract.conftest import Backend
from tests.contract.sample_jobs import make_job, move


# --- random sequences against a model ------------------------------------------------------------------
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
