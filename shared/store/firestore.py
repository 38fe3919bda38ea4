"""Firestore job store: the production backend, with the same contract as :mod:`shared.store.sqlite`.

Layout (collection names are fixed; separate deployments use separate Firestore *databases*)::

    gpuq_jobs/{job_id}                      status, owner, version, queued_at, finished_at,
                                            pending_callbacks, claim, doc (the Job as JSON)
    gpuq_jobs/{job_id}/chunks/{a}-{s}       attempt, seq, text   (deterministic id: a duplicate is a no-op)
    gpuq_idempotency/{sha256(owner, key)}   owner, key, request_hash, job_id
    gpuq_records/{kind}:{key}               kind, key, doc (JSON)

The job itself is one JSON string (``doc``), exempt from indexing (``infra/firestore.indexes.json``):
Firestore maps cannot hold every JSON value a job may carry (arrays of arrays in ``options``), and the
few fields the store queries on are copied beside it. Every conditional write runs in a transaction
(read, mutate a copy, write) and is retried on contention, so :meth:`FirestoreJobStore.modify` keeps the
compare-and-set contract of :class:`~shared.store.base.JobStore`.

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
from collections.abc import Callable, Iterable, Iterator
from typing import TYPE_CHECKING, Any, ParamSpec, TypeVar
from urllib.parse import quote

from shared.errors import Conflict, GpuqError, PayloadTooLarge, ServiceError, StaleWrite
from shared.models import Job
from shared.states import JobStatus
from shared.store.base import Chunk, IdempotencyClaim, Mutation

if TYPE_CHECKING:
    from google.cloud.firestore import Client, DocumentReference, Transaction

__all__ = ["CHUNKS", "CLAIMS", "JOBS", "MAX_DOC_BYTES", "RECORDS", "FirestoreJobStore"]

log = logging.getLogger("gpuq.store.firestore")

JOBS = "gpuq_jobs"
CHUNKS = "chunks"
CLAIMS = "gpuq_idempotency"
RECORDS = "gpuq_records"

MAX_DOC_BYTES = 1_000_000
"""A Firestore document holds at most 1 MiB (1,048,576 bytes) including field names; keep headroom."""

_CHUNKS_PER_TX = 200
_BACKOFF_S = 0.02
_BACKOFF_MAX_S = 0.5

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
            raise ServiceError(f"the job store (Firestore) failed: {type(exc).__name__}: {_short(exc)}",
                               code="store_unavailable") from exc

    return wrapper


@functools.cache
def _grpc_error_types() -> type[BaseException]:
    import grpc

    return grpc.RpcError


def _short(exc: BaseException) -> str:
    text = getattr(exc, "message", None) or str(exc)
    return str(text).splitlines()[0][:200] if text else ""


def _is_contention(exc: BaseException) -> bool:
    """A transaction lost to another one (now, or after the client library's own commit retries)."""
    from google.api_core import exceptions as gexc

    if isinstance(exc, gexc.Aborted):
        return True
    # The library wraps a commit that stayed Aborted through its attempts in a ValueError.
    return isinstance(exc, ValueError) and isinstance(exc.__cause__, gexc.Aborted)


def claim_doc_id(owner: str, key: str) -> str:
    """One document per (owner, key); hashed because keys may hold ``/`` and run long."""
    return hashlib.sha256(f"{owner}\x00{key}".encode()).hexdigest()


def record_doc_id(kind: str, key: str) -> str:
    return f"{quote(kind, safe='')}:{quote(key, safe='')}"


def chunk_doc_id(attempt: int, seq: int) -> str:
    return f"{attempt}-{seq}"


class FirestoreJobStore:
    """A :class:`~shared.store.base.JobStore` on Cloud Firestore (native mode).

    ``contention_timeout_s`` bounds how long a write keeps retrying against contending transactions
    before it gives up with :class:`StaleWrite`; ``timeout_s`` bounds each read (retries included).
    """

    def __init__(self, client: Client, *, timeout_s: float = 10.0, contention_timeout_s: float = 30.0) -> None:
        self._client = client
        self._timeout_s = timeout_s
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
    def _read_kwargs(self) -> dict[str, Any]:
        from google.api_core import exceptions as gexc
        from google.api_core.retry import Retry, if_exception_type

        retry = Retry(
            predicate=if_exception_type(gexc.ServiceUnavailable, gexc.InternalServerError, gexc.DeadlineExceeded),
            initial=0.1, maximum=1.0, multiplier=2.0, timeout=self._timeout_s,
        )
        return {"retry": retry, "timeout": self._timeout_s}

    def _in_transaction(self, body: Callable[[Transaction], T], what: str) -> T:
        """Run ``body`` in a read-write transaction, again from the start on contention, within a deadline."""
        from google.cloud import firestore

        deadline = time.monotonic() + self._contention_timeout_s
        delay = _BACKOFF_S
        while True:
            try:
                return firestore.transactional(body)(self._client.transaction(max_attempts=5))
            except Exception as exc:
                if not _is_contention(exc):
                    raise
                if time.monotonic() + delay > deadline:
                    raise StaleWrite(f"{what} lost to concurrent writers for "
                                     f"{self._contention_timeout_s:g}s") from exc
                time.sleep(delay * random.uniform(0.5, 1.5))  # jitter: contenders should not retry in step
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
    def _job_of(snapshot: Any) -> Job | None:
        if snapshot is None or not snapshot.exists:
            return None
        return Job.model_validate_json(snapshot.get("doc"))

    # --- jobs ---------------------------------------------------------------------------------
    @_translate_errors
    def create(self, job: Job, claim: IdempotencyClaim | None) -> tuple[Job, bool]:
        doc = self._checked_doc(job)
        job_ref = self._jobs.document(job.id)
        claim_ref = self._claims.document(claim_doc_id(claim.owner, claim.key)) if claim else None

        def body(tx: Transaction) -> tuple[Job, bool]:
            if claim is not None and claim_ref is not None:
                held = claim_ref.get(transaction=tx)
                if held.exists:
                    existing = self._job_of(self._jobs.document(held.get("job_id")).get(transaction=tx))
                    if existing is not None:  # a claim whose job was deleted is free again
                        if held.get("request_hash") != claim.request_hash:
                            raise Conflict("idempotency_key was already used with a different request",
                                           code="idempotency_conflict")
                        return existing, False
                tx.set(claim_ref, {"owner": claim.owner, "key": claim.key, "request_hash": claim.request_hash,
                                   "job_id": job.id})
            tx.create(job_ref, {**self._job_fields(job, doc), "claim": claim_ref.id if claim_ref else None})
            return job, True

        from google.api_core import exceptions as gexc

        try:
            return self._in_transaction(body, f"creating job {job.id}")
        except gexc.AlreadyExists as exc:
            raise Conflict(f"a job with id {job.id} already exists", code="job_exists") from exc

    @_translate_errors
    def get(self, job_id: str) -> Job | None:
        return self._job_of(self._jobs.document(job_id).get(**self._read_kwargs()))

    @_translate_errors
    def modify(self, job_id: str, mutate: Mutation) -> Job | None:
        ref = self._jobs.document(job_id)

        def body(tx: Transaction) -> Job | None:
            current = self._job_of(ref.get(transaction=tx))
            if current is None:
                return None
            changed = mutate(current.model_copy(deep=True))
            if changed is None:
                return current
            changed.version = current.version + 1
            tx.update(ref, self._job_fields(changed, self._checked_doc(changed)))
            return changed

        return self._in_transaction(body, f"job {job_id}")

    @_translate_errors
    def delete(self, job_id: str) -> None:
        ref = self._jobs.document(job_id)

        def body(tx: Transaction) -> None:
            snapshot = ref.get(transaction=tx)
            if not snapshot.exists:
                return
            claim_id = snapshot.get("claim")
            if claim_id:
                tx.delete(self._claims.document(claim_id))
            tx.delete(ref)

        self._in_transaction(body, f"deleting job {job_id}")
        # Firestore does not cascade: the chunks go after their job (a leftover chunk is unreachable).
        self._delete_all(ref.collection(CHUNKS).list_documents(page_size=500))

    def _delete_all(self, refs: Iterable[DocumentReference]) -> None:
        batch = self._client.batch()
        pending = 0
        for ref in refs:
            batch.delete(ref)
            pending += 1
            if pending == 400:
                batch.commit()
                batch, pending = self._client.batch(), 0
        if pending:
            batch.commit()

    @_translate_errors
    def list_by_status(self, statuses: Iterable[JobStatus], *, limit: int = 1000, finished_before: float | None = None,
                       with_pending_callbacks: bool = False) -> list[Job]:
        """Oldest first. ``finished_before`` is applied as the results stream (no second range field in
        the index); the reaper only asks for it together with ``with_pending_callbacks``, a small set."""
        from google.cloud.firestore import FieldFilter, Query

        wanted = sorted({s.value for s in statuses})
        if not wanted or limit <= 0:
            return []
        query = self._jobs.where(filter=FieldFilter("status", "in", wanted))
        if with_pending_callbacks:
            query = query.where(filter=FieldFilter("pending_callbacks", "==", True))
        query = query.order_by("queued_at", direction=Query.ASCENDING)
        if finished_before is None:
            query = query.limit(limit)
        out: list[Job] = []
        for snapshot in query.stream(**self._read_kwargs()):
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
        unique: dict[str, Chunk] = {}
        for chunk in chunks:
            unique.setdefault(chunk_doc_id(chunk.attempt, chunk.seq), chunk)  # first one wins, as in SQLite
        items = list(unique.items())
        parent = self._jobs.document(job_id).collection(CHUNKS)
        added = 0
        for start in range(0, len(items), _CHUNKS_PER_TX):
            group = items[start:start + _CHUNKS_PER_TX]

            def body(tx: Transaction, group: list[tuple[str, Chunk]] = group) -> int:
                refs = [parent.document(doc_id) for doc_id, _ in group]
                present = {snap.id for snap in tx.get_all(refs) if snap.exists}
                new = 0
                for ref, (doc_id, chunk) in zip(refs, group, strict=True):
                    if doc_id not in present:
                        tx.create(ref, {"attempt": chunk.attempt, "seq": chunk.seq, "text": chunk.text})
                        new += 1
                return new

            added += self._in_transaction(body, f"chunks of job {job_id}")
        return added

    @_translate_errors
    def read_chunks(self, job_id: str, attempt: int, after_seq: int = -1) -> list[Chunk]:
        from google.cloud.firestore import FieldFilter, Query

        query = (
            self._jobs.document(job_id).collection(CHUNKS)
            .where(filter=FieldFilter("attempt", "==", attempt))
            .where(filter=FieldFilter("seq", ">", after_seq))
            .order_by("seq", direction=Query.ASCENDING)
        )
        return [Chunk(attempt=int(s.get("attempt")), seq=int(s.get("seq")), text=str(s.get("text")))
                for s in query.stream(**self._read_kwargs())]

    # --- small records ------------------------------------------------------------------------
    @_translate_errors
    def get_record(self, kind: str, key: str) -> dict[str, Any] | None:
        snapshot = self._records.document(record_doc_id(kind, key)).get(**self._read_kwargs())
        if not snapshot.exists:
            return None
        value: dict[str, Any] = json.loads(snapshot.get("doc"))
        return value

    @_translate_errors
    def put_record(self, kind: str, key: str, value: dict[str, Any]) -> None:
        self._records.document(record_doc_id(kind, key)).set(
            {"kind": kind, "key": key, "doc": json.dumps(value)}, timeout=self._timeout_s
        )

    def close(self) -> None:
        self._client.close()

    def iter_chunk_ids(self, job_id: str) -> Iterator[str]:
        """Document ids of a job's stored chunks (operators and tests inspect leftovers with it)."""
        for ref in self._jobs.document(job_id).collection(CHUNKS).list_documents(page_size=500):
            yield ref.id
