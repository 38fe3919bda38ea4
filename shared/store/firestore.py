"""Firestore job store: the production backend, with the same contract as :mod:`shared.store.sqlite`.

Layout (collection names are fixed; separate deployments use separate Firestore *databases*)::

    gpuq_jobs/{job_id}                      status, owner, version, queued_at, finished_at,
                                            pending_callbacks, claim, doc (the Job as JSON)
    gpuq_jobs/{job_id}/chunks/{a}-{s}       attempt, seq, text   (deterministic id: a duplicate is a no-op)
    gpuq_idempotency/{sha256(owner, key)}   owner, key, request_hash, job_id
    gpuq_records/{kind}:{key}               kind, key, doc (JSON)
    gpuq_nonces/{nonce}                     seen_at, expire_at (a TTL policy on expire_at deletes them)
    gpuq_events/{sha256(idempotency key)}   type, family, subject, at (commit time), expire_at, doc

The job itself is one JSON string (``doc``), exempt from indexing (``infra/firestore.indexes.json``):
Firestore maps cannot hold every JSON value a job may carry (arrays of arrays in ``options``), and the
few fields the store queries on are copied beside it.

Every conditional write is an atomic commit with preconditions — Firestore's optimistic transaction:
:meth:`FirestoreJobStore.modify` reads the job, lets ``mutate`` change a copy, and commits only if the
document's ``update_time`` is still the one it read (the compare-and-set of the SQLite store's
``WHERE version = ?``), re-reading and deciding again on a lost race. A job and its idempotency claim
are created in one commit (``create`` = "must not exist"), so they exist together or not at all.
Why not read-write transactions: they take locks on read (pessimistic concurrency in the server client
libraries), and two writers racing on one job deadlock until the lock times out — 2 s per lost race on
the emulator (100 contended ``modify`` calls from 4 threads: ~200 s with transactions, well under 1 s
with preconditions). Lock-free compare-and-set never waits on another writer.

Vendor errors are translated here, at one boundary: contention that outlasts the retries becomes
:class:`~shared.errors.StaleWrite`; anything else Firestore or gRPC raises becomes a
:class:`~shared.errors.ServiceError` with code ``store_unavailable``.

The client is sync (the functions are sync). It honours ``FIRESTORE_EMULATOR_HOST`` itself (the Google
client library reads it when the client is built), which is how tests and the dev stack reach the
emulator.
"""

from __future__ import annotations

import functools
import hashlib
import json
import logging
import random
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any, ParamSpec, TypeVar
from urllib.parse import quote

from shared.errors import Conflict, GpuqError, PayloadTooLarge, ServiceError, StaleWrite
from shared.models import Job
from shared.states import JobStatus
from shared.store.base import Chunk, EventPage, IdempotencyClaim, Mutation, RecordMutation

if TYPE_CHECKING:
    from google.cloud.firestore import Client, DocumentReference, DocumentSnapshot, WriteBatch

__all__ = ["CHUNKS", "CLAIMS", "JOBS", "MAX_DOC_BYTES", "RECORDS", "FirestoreJobStore"]

log = logging.getLogger("gpuq.store.firestore")

JOBS = "gpuq_jobs"
CHUNKS = "chunks"
CLAIMS = "gpuq_idempotency"
RECORDS = "gpuq_records"

MAX_DOC_BYTES = 1_000_000
"""A Firestore document holds at most 1 MiB (1,048,576 bytes) including field names; keep headroom."""

_WRITES_PER_BATCH = 400
_CAS_ATTEMPTS = 20
_BACKOFF_S = 0.005
_BACKOFF_MAX_S = 0.1

P = ParamSpec("P")
T = TypeVar("T")


def _translate_errors(fn: Callable[P, T]) -> Callable[P, T]:
    """Turn every vendor exception into the gpuq tree; let gpuq errors (and mutate's) through."""

    @functools.wraps(fn)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> T:
        from google.api_core import exceptions as gexc

        try:
            return fn(*args, **kwargs)
        except GpuqError:
            raise
        except (gexc.GoogleAPIError, _grpc_error_types()) as exc:
            raise ServiceError(
                f"the job store (Firestore) failed: {type(exc).__name__}: {_short(exc)}", code="store_unavailable"
            ) from exc

    return wrapper


@functools.cache
def _grpc_error_types() -> type[BaseException]:
    import grpc

    error: type[BaseException] = grpc.RpcError
    return error


def _short(exc: BaseException) -> str:
    text = getattr(exc, "message", None) or str(exc)
    return str(text).splitlines()[0][:200] if text else ""


def _claim_doc_id(owner: str, key: str) -> str:
    """One document per (owner, key); hashed because keys may hold ``/`` and run long."""
    return hashlib.sha256(f"{owner}\x00{key}".encode()).hexdigest()


def _record_doc_id(kind: str, key: str) -> str:
    return f"{quote(kind, safe='')}:{quote(key, safe='')}"


def _chunk_doc_id(attempt: int, seq: int) -> str:
    return f"{attempt}-{seq}"


class FirestoreJobStore:
    """A :class:`~shared.store.base.JobStore` on Cloud Firestore (native mode).

    A conditional write that keeps losing races gives up with :class:`StaleWrite` after
    ``max_attempts`` reads or ``contention_timeout_s``, whichever comes first (as the SQLite store does
    after 20); ``timeout_s`` bounds each call to Firestore, its retries of transient errors included.
    """

    def __init__(
        self,
        client: Client,
        *,
        timeout_s: float = 10.0,
        max_attempts: int = _CAS_ATTEMPTS,
        contention_timeout_s: float = 30.0,
    ) -> None:
        self._client = client
        self._timeout_s = timeout_s
        self._max_attempts = max_attempts
        self._contention_timeout_s = contention_timeout_s
        self._jobs = client.collection(JOBS)
        self._claims = client.collection(CLAIMS)
        self._records = client.collection(RECORDS)

    @classmethod
    def connect(cls, project: str | None = None, database: str | None = None, **kwargs: Any) -> FirestoreJobStore:
        """Build the client (credentials from the environment: ADC, or the emulator when
        ``FIRESTORE_EMULATOR_HOST`` is set) and the store on it."""
        from google.cloud import firestore

        return cls(firestore.Client(project=project, database=database), **kwargs)

    @property
    def client(self) -> Client:
        return self._client

    # --- plumbing -----------------------------------------------------------------------------
    def _retrying(self) -> dict[str, Any]:
        """Reads (and blind overwrites) are safe to retry: transient errors are retried within ``timeout_s``."""
        from google.api_core import exceptions as gexc
        from google.api_core.retry import Retry, if_exception_type

        retry = Retry(
            predicate=if_exception_type(gexc.ServiceUnavailable, gexc.InternalServerError, gexc.DeadlineExceeded),
            initial=0.1,
            maximum=1.0,
            multiplier=2.0,
            timeout=self._timeout_s,
        )
        return {"retry": retry, "timeout": self._timeout_s}

    def _commit(self, batch: WriteBatch) -> None:
        """A conditional commit is never retried blindly: a retry after a commit that succeeded but
        whose answer was lost would fail its precondition, and the caller would apply its change twice."""
        batch.commit(retry=None, timeout=self._timeout_s)

    def _cas_loop(self, what: str) -> Iterator[int]:
        """Yields attempt numbers, sleeping (with jitter) between them, until the contention deadline."""
        deadline = time.monotonic() + self._contention_timeout_s
        delay = _BACKOFF_S
        attempt = 0
        while True:
            yield attempt
            attempt += 1
            if attempt >= self._max_attempts or time.monotonic() + delay > deadline:
                raise StaleWrite(
                    f"{what} kept changing under {attempt} attempts to write it ({self._contention_timeout_s:g}s)"
                )
            time.sleep(delay * random.uniform(0.5, 1.5))  # contenders must not retry in step
            delay = min(delay * 2, _BACKOFF_MAX_S)

    @staticmethod
    def _job_fields(job: Job, doc: str) -> dict[str, Any]:
        """What is stored: the job as JSON plus the fields the store's queries filter and sort on."""
        return {
            "owner": job.owner,
            "status": job.status.value,
            "version": job.version,
            "queued_at": job.queued_at,
            "finished_at": job.finished_at,
            "pending_callbacks": bool(job.callback.pending),
            "doc": doc,
        }

    @staticmethod
    def _checked_doc(job: Job) -> str:
        doc = job.model_dump_json()
        if len(doc.encode()) > MAX_DOC_BYTES:
            raise PayloadTooLarge(
                f"job {job.id} is {len(doc.encode())} bytes as a document; the store keeps at most {MAX_DOC_BYTES}",
                code="job_too_large",
            )
        return doc

    @staticmethod
    def _job_of(snapshot: DocumentSnapshot[Any] | None) -> Job | None:
        if snapshot is None or not snapshot.exists:
            return None
        return Job.model_validate_json(snapshot.get("doc"))

    # --- jobs ---------------------------------------------------------------------------------
    @_translate_errors
    def create(self, job: Job, claim: IdempotencyClaim | None) -> tuple[Job, bool]:
        from google.api_core import exceptions as gexc

        doc = self._checked_doc(job)
        job_ref = self._jobs.document(job.id)
        if claim is None:
            batch = self._client.batch()
            batch.create(job_ref, {**self._job_fields(job, doc), "claim": None})
            try:
                self._commit(batch)
            except gexc.AlreadyExists as exc:
                raise Conflict(f"a job with id {job.id} already exists", code="job_exists") from exc
            return job, True

        claim_ref = self._claims.document(_claim_doc_id(claim.owner, claim.key))
        claim_fields = {"owner": claim.owner, "key": claim.key, "request_hash": claim.request_hash, "job_id": job.id}
        for _ in self._cas_loop(f"idempotency key of job {job.id}"):
            held = claim_ref.get(**self._retrying())
            batch = self._client.batch()
            if held.exists:
                existing = self._job_of(self._jobs.document(held.get("job_id")).get(**self._retrying()))
                if existing is not None:
                    if held.get("request_hash") != claim.request_hash:
                        raise Conflict(
                            "idempotency_key was already used with a different request", code="idempotency_conflict"
                        )
                    return existing, False
                # The claim's job was deleted (a refused request): the key is free again. Take it over,
                # on condition that nobody else did in between.
                batch.update(
                    claim_ref, claim_fields, option=self._client.write_option(last_update_time=held.update_time)
                )
            else:
                batch.create(claim_ref, claim_fields)
            # One atomic commit: the claim and its job exist together or not at all.
            batch.create(job_ref, {**self._job_fields(job, doc), "claim": claim_ref.id})
            try:
                self._commit(batch)
            except (gexc.AlreadyExists, gexc.FailedPrecondition, gexc.NotFound):
                if job_ref.get(**self._retrying()).exists and not held.exists:
                    raise Conflict(f"a job with id {job.id} already exists", code="job_exists") from None
                continue  # another request took the key first: read what it stored
            return job, True
        raise AssertionError("unreachable")

    @_translate_errors
    def get(self, job_id: str) -> Job | None:
        return self._job_of(self._jobs.document(job_id).get(**self._retrying()))

    @_translate_errors
    def modify(self, job_id: str, mutate: Mutation) -> Job | None:
        from google.api_core import exceptions as gexc

        ref = self._jobs.document(job_id)
        for _ in self._cas_loop(f"job {job_id}"):
            snapshot = ref.get(**self._retrying())
            current = self._job_of(snapshot)
            if current is None:
                return None
            changed = mutate(current.model_copy(deep=True))
            if changed is None:
                return current
            changed.version = current.version + 1
            batch = self._client.batch()
            # Compare-and-set: the write applies only if the document is still the one we read.
            batch.update(
                ref,
                self._job_fields(changed, self._checked_doc(changed)),
                option=self._client.write_option(last_update_time=snapshot.update_time),
            )
            try:
                self._commit(batch)
            except (gexc.FailedPrecondition, gexc.NotFound):
                continue  # lost the race (or the job was deleted): decide again from the fresh state
            return changed
        raise AssertionError("unreachable")

    @_translate_errors
    def delete(self, job_id: str) -> None:
        from google.api_core import exceptions as gexc

        ref = self._jobs.document(job_id)
        for _ in self._cas_loop(f"deleting job {job_id}"):
            snapshot = ref.get(**self._retrying())
            if not snapshot.exists:
                break
            batch = self._client.batch()
            claim_id = snapshot.get("claim")
            if claim_id:
                batch.delete(self._claims.document(claim_id))
            batch.delete(ref, option=self._client.write_option(last_update_time=snapshot.update_time))
            try:
                self._commit(batch)
            except (gexc.FailedPrecondition, gexc.NotFound):
                continue
            break
        # Firestore does not cascade: the chunks go after their job (a leftover chunk is unreachable).
        self._delete_all(ref.collection(CHUNKS).list_documents(page_size=500))

    def _delete_all(self, refs: Iterable[DocumentReference]) -> None:
        batch = self._client.batch()
        pending = 0
        for ref in refs:
            batch.delete(ref)
            pending += 1
            if pending == _WRITES_PER_BATCH:
                batch.commit(timeout=self._timeout_s)
                batch, pending = self._client.batch(), 0
        if pending:
            batch.commit(timeout=self._timeout_s)

    @_translate_errors
    def list_by_status(
        self,
        statuses: Iterable[JobStatus],
        *,
        limit: int = 1000,
        finished_before: float | None = None,
        with_pending_callbacks: bool = False,
    ) -> list[Job]:
        """Oldest first. ``finished_before`` is applied as the results stream (no second range field in
        the index); the reaper only asks for it together with ``with_pending_callbacks``, a small set."""
        from google.cloud.firestore import FieldFilter, Query

        wanted = sorted({JobStatus(s).value for s in statuses})
        if not wanted or limit <= 0:
            return []
        query = self._jobs.where(filter=FieldFilter("status", "in", wanted))
        if with_pending_callbacks:
            query = query.where(filter=FieldFilter("pending_callbacks", "==", True))
        query = query.order_by("queued_at", direction=Query.ASCENDING)
        if finished_before is None:
            query = query.limit(limit)
        out: list[Job] = []
        for snapshot in query.stream(**self._retrying()):
            if finished_before is not None:
                finished_at = snapshot.get("finished_at")
                if finished_at is None or finished_at >= finished_before:
                    continue
            job = self._job_of(snapshot)
            if job is not None:
                out.append(job)
                if len(out) >= limit:
                    break
        return out

    # --- output chunks ------------------------------------------------------------------------
    @_translate_errors
    def append_chunks(self, job_id: str, chunks: Iterable[Chunk]) -> int:
        from google.api_core import exceptions as gexc

        unique: dict[str, Chunk] = {}
        for chunk in chunks:
            unique.setdefault(_chunk_doc_id(chunk.attempt, chunk.seq), chunk)  # first one wins, as in SQLite
        items = list(unique.items())
        parent = self._jobs.document(job_id).collection(CHUNKS)
        added = 0
        for start in range(0, len(items), _WRITES_PER_BATCH):
            group = [(parent.document(doc_id), chunk) for doc_id, chunk in items[start : start + _WRITES_PER_BATCH]]
            for _ in self._cas_loop(f"chunks of job {job_id}"):
                present = {
                    snap.id
                    for snap in self._client.get_all([ref for ref, _ in group], **self._retrying())
                    if snap.exists
                }
                batch = self._client.batch()
                new = 0
                for ref, chunk in group:
                    if ref.id not in present:
                        batch.create(ref, {"attempt": chunk.attempt, "seq": chunk.seq, "text": chunk.text})
                        new += 1
                if new == 0:
                    break
                try:
                    self._commit(batch)  # all-or-nothing: fails if any of them appeared meanwhile
                except gexc.AlreadyExists:
                    continue  # a duplicate report raced us: count again what is missing
                added += new
                break
        return added

    @_translate_errors
    def read_chunks(self, job_id: str, attempt: int, after_seq: int = -1) -> list[Chunk]:
        from google.cloud.firestore import FieldFilter, Query

        query = (
            self._jobs.document(job_id)
            .collection(CHUNKS)
            .where(filter=FieldFilter("attempt", "==", attempt))
            .where(filter=FieldFilter("seq", ">", after_seq))
            .order_by("seq", direction=Query.ASCENDING)
        )
        return [
            Chunk(attempt=int(s.get("attempt")), seq=int(s.get("seq")), text=str(s.get("text")))
            for s in query.stream(**self._retrying())
        ]

    # --- small records ------------------------------------------------------------------------
    @_translate_errors
    def get_record(self, kind: str, key: str) -> dict[str, Any] | None:
        snapshot = self._records.document(_record_doc_id(kind, key)).get(**self._retrying())
        if not snapshot.exists:
            return None
        value: dict[str, Any] = json.loads(snapshot.get("doc"))
        return value

    @_translate_errors
    def list_records(self, kind: str) -> list[dict[str, Any]]:
        """Every record of a kind, each with its key as ``id``, by key (as SQLite orders them)."""
        from google.cloud.firestore import FieldFilter

        query = self._records.where(filter=FieldFilter("kind", "==", kind))
        found = [(str(s.get("key")), json.loads(s.get("doc"))) for s in query.stream(**self._retrying())]
        return [{**doc, "id": key} for key, doc in sorted(found, key=lambda kv: kv[0])]

    @_translate_errors
    def put_record(self, kind: str, key: str, value: dict[str, Any]) -> None:
        self._records.document(_record_doc_id(kind, key)).set(
            {"kind": kind, "key": key, "doc": json.dumps(value)}, **self._retrying()
        )

    @_translate_errors
    def modify_record(self, kind: str, key: str, mutate: RecordMutation) -> tuple[dict[str, Any] | None, bool]:
        from google.api_core import exceptions as gexc

        ref = self._records.document(_record_doc_id(kind, key))
        for _ in self._cas_loop(f"record {kind}/{key}"):
            snapshot = ref.get(**self._retrying())
            raw = snapshot.get("doc") if snapshot.exists else None
            changed = mutate(json.loads(raw) if raw is not None else None)
            if changed is None:
                return (json.loads(raw) if raw is not None else None), False
            fields = {"kind": kind, "key": key, "doc": json.dumps(changed)}
            batch = self._client.batch()
            if snapshot.exists:  # compare-and-set: only over the version we read
                batch.update(ref, fields, option=self._client.write_option(last_update_time=snapshot.update_time))
            else:  # create: only if nobody created it meanwhile
                batch.create(ref, fields)
            try:
                self._commit(batch)
            except (gexc.FailedPrecondition, gexc.NotFound, gexc.AlreadyExists):
                continue  # lost the race: decide again from the fresh value
            return changed, True
        raise AssertionError("unreachable")

    @_translate_errors
    def delete_record(self, kind: str, key: str) -> None:
        self._records.document(_record_doc_id(kind, key)).delete(**self._retrying())

    @_translate_errors
    def claim_nonce(self, nonce: str, now: float, window_s: float) -> bool:
        from shared.store.firestore_nonces import claim_nonce

        return claim_nonce(self._client, self._timeout_s, self._retrying(), nonce, now, window_s)

    @_translate_errors
    def append_event(self, event: Mapping[str, Any], *, now: float, keep_s: float) -> bool:
        from shared.store.firestore_events import append_event

        return append_event(self._client, self._timeout_s, event, now, keep_s)

    @_translate_errors
    def list_events(
        self, *, after: str | None, types: Sequence[str] = (), subject: str | None = None, limit: int = 100
    ) -> EventPage:
        from shared.store.firestore_events import list_events

        return list_events(self._client, self._retrying(), after=after, types=types, subject=subject, limit=limit)

    def close(self) -> None:
        self._client.close()  # type: ignore[no-untyped-call]

    def iter_chunk_ids(self, job_id: str) -> Iterator[str]:
        """Document ids of a job's stored chunks (operators and tests inspect leftovers with it)."""
        for ref in self._jobs.document(job_id).collection(CHUNKS).list_documents(page_size=500):
            yield ref.id
