"""What only the Firestore store has: a document size limit, vendor errors to translate, its own layout."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from shared.errors import GpuqError, PayloadTooLarge, ServiceError
from shared.states import JobStatus
from shared.store.base import Chunk, IdempotencyClaim
from shared.store.firestore import CHUNKS, CLAIMS, JOBS, MAX_DOC_BYTES, RECORDS, FirestoreJobStore
from shared.store.firestore_events import EVENTS
from tests.contract.conftest import PROJECT
from tests.contract.emulator import FirestoreEmulator, free_port
from tests.contract.sample_jobs import make_job


@pytest.fixture
def fs_store(firestore_emulator: FirestoreEmulator, monkeypatch: pytest.MonkeyPatch) -> Iterator[FirestoreJobStore]:
    monkeypatch.setenv("FIRESTORE_EMULATOR_HOST", firestore_emulator.host)
    firestore_emulator.reset(PROJECT)
    store = FirestoreJobStore.connect(project=PROJECT)
    yield store
    store.close()


def test_a_job_too_large_for_one_document_is_refused_and_nothing_is_kept(fs_store: FirestoreJobStore) -> None:
    with pytest.raises(PayloadTooLarge) as refused:
        fs_store.create(make_job(prompt="x" * MAX_DOC_BYTES), IdempotencyClaim("alice", "k", "h"))
    assert refused.value.code == "job_too_large"
    assert fs_store.get("job_1") is None
    created, ok = fs_store.create(make_job("job_2"), IdempotencyClaim("alice", "k", "h2"))
    assert ok and created.id == "job_2"


def test_the_job_and_its_claim_are_one_document_each_with_the_queried_fields(fs_store: FirestoreJobStore) -> None:
    fs_store.create(make_job(), IdempotencyClaim("alice", "k", "h"))
    fs_store.modify("job_1", lambda j: j.model_copy(update={"status": JobStatus.RUNNING}))
    doc = fs_store.client.collection(JOBS).document("job_1").get().to_dict()
    assert doc is not None
    assert {k: doc[k] for k in ("owner", "status", "version", "queued_at", "pending_callbacks")} == {
        "owner": "alice",
        "status": "running",
        "version": 1,
        "queued_at": 1000.0,
        "pending_callbacks": False,
    }
    claims = [snap.to_dict() for snap in fs_store.client.collection(CLAIMS).stream()]
    assert claims == [{"owner": "alice", "key": "k", "request_hash": "h", "job_id": "job_1"}]
    fs_store.append_chunks("job_1", [Chunk(1, 0, "a")])
    assert list(fs_store.iter_chunk_ids("job_1")) == ["1-0"]


def test_no_vendor_exception_slips_through_when_firestore_is_unreachable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FIRESTORE_EMULATOR_HOST", f"127.0.0.1:{free_port()}")  # nothing listens there
    store = FirestoreJobStore.connect(project=PROJECT, timeout_s=0.5)
    calls: dict[str, Callable[[], object]] = {
        "create": lambda: store.create(make_job(), None),
        "create with claim": lambda: store.create(make_job(), IdempotencyClaim("alice", "k", "h")),
        "get": lambda: store.get("job_1"),
        "modify": lambda: store.modify("job_1", lambda j: j),
        "list_by_status": lambda: store.list_by_status([JobStatus.QUEUED]),
        "append_chunks": lambda: store.append_chunks("job_1", [Chunk(1, 0, "a")]),
        "read_chunks": lambda: store.read_chunks("job_1", 1),
        "get_record": lambda: store.get_record("instance", "x"),
        "put_record": lambda: store.put_record("instance", "x", {}),
    }
    try:
        for name, call in calls.items():
            with pytest.raises(GpuqError) as caught:
                call()
            assert isinstance(caught.value, ServiceError), name
            assert caught.value.code == "store_unavailable", name
            assert caught.value.__cause__ is not None, name
    finally:
        store.close()


def test_the_declared_indexes_serve_the_stores_queries() -> None:
    """The emulator serves any query without an index; production Firestore refuses one whose composite index
    is missing. These are the store's queries (filters in order, then the sort) and the index each needs."""
    declared = json.loads((Path(__file__).resolve().parents[2] / "infra" / "firestore.indexes.json").read_text())
    indexes = {(i["collectionGroup"], tuple(f["fieldPath"] for f in i["fields"])) for i in declared["indexes"]}
    assert indexes == {
        (JOBS, ("status", "queued_at")),  # list_by_status: status IN … ORDER BY queued_at
        (JOBS, ("pending_callbacks", "status", "queued_at")),  # … AND pending_callbacks == true
        (CHUNKS, ("attempt", "seq")),  # read_chunks: attempt == a AND seq > s ORDER BY seq
        (EVENTS, ("subject", "at")),  # list_events: subject == s ORDER BY at, __name__
        (EVENTS, ("family", "at")),  # list_events: family IN … ORDER BY at, __name__
    }
    assert all(
        i["queryScope"] == "COLLECTION" and all(f["order"] == "ASCENDING" for f in i["fields"])
        for i in declared["indexes"]
    )
    exempt = {(o["collectionGroup"], o["fieldPath"]) for o in declared["fieldOverrides"] if o["indexes"] == []}
    assert {
        (JOBS, "doc"),
        (CHUNKS, "text"),
        (RECORDS, "doc"),
        (EVENTS, "doc"),
    } <= exempt  # large strings, never queried
