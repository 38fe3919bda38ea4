"""SQLite job store: one file, WAL mode, one connection per thread.

Jobs are JSON documents with a few indexed columns; writes are compare-and-set on ``version``.
The file is shared by every process that opens it (the functions' gunicorn workers), and so is what
it remembers: signed-request nonces (:meth:`SqliteJobStore.claim_nonce`), so a replay is refused
whichever worker it reaches. Events are rows of ``events`` in the order SQLite commits them (an
``AUTOINCREMENT`` key: one writer at a time per file, and a deleted key is never reused, so a reader's
position stays valid); an event's ``idempotency_key`` is unique, so a re-run writes nothing.
"""

from __future__ import annotations

import json
import sqlite3
import threading
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from shared.errors import Conflict, InvalidRequest, StaleWrite
from shared.models import Job
from shared.states import JobStatus
from shared.store.base import Chunk, EventPage, IdempotencyClaim, Mutation, RecordMutation

__all__ = ["SqliteJobStore"]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS jobs (
    id TEXT PRIMARY KEY,
    owner TEXT NOT NULL,
    status TEXT NOT NULL,
    version INTEGER NOT NULL,
    queued_at REAL NOT NULL,
    idem_key TEXT,
    request_hash TEXT,
    doc TEXT NOT NULL
);
CREATE UNIQUE INDEX IF NOT EXISTS jobs_idem ON jobs(owner, idem_key) WHERE idem_key IS NOT NULL;
CREATE INDEX IF NOT EXISTS jobs_status ON jobs(status, queued_at);
CREATE TABLE IF NOT EXISTS chunks (
    job_id TEXT NOT NULL,
    attempt INTEGER NOT NULL,
    seq INTEGER NOT NULL,
    text TEXT NOT NULL,
    PRIMARY KEY (job_id, attempt, seq)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS records (
    kind TEXT NOT NULL,
    key TEXT NOT NULL,
    doc TEXT NOT NULL,
    PRIMARY KEY (kind, key)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS nonces (
    nonce TEXT PRIMARY KEY,
    seen_at REAL NOT NULL
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS nonces_seen ON nonces(seen_at);
CREATE TABLE IF NOT EXISTS events (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    idem_key TEXT NOT NULL UNIQUE,
    type TEXT NOT NULL,
    subject TEXT NOT NULL,
    expire_at REAL NOT NULL,
    doc TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS events_subject ON events(subject, seq);
CREATE INDEX IF NOT EXISTS events_expiry ON events(expire_at);
"""

_CAS_RETRIES = 20
_PRUNE_EVERY = 256  # events: every 256th insert deletes the expired ones (one indexed range delete)


class SqliteJobStore:
    def __init__(self, path: Path | str, *, busy_timeout_s: float = 10.0) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._busy_timeout_s = busy_timeout_s
        self._local = threading.local()
        self._all: list[sqlite3.Connection] = []
        self._lock = threading.Lock()
        self._conn().executescript(_SCHEMA)

    # --- connections --------------------------------------------------------------------------
    def _conn(self) -> sqlite3.Connection:
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is None:
            conn = sqlite3.connect(
                self.path, timeout=self._busy_timeout_s, isolation_level=None, check_same_thread=False
            )
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=NORMAL")
            self._local.conn = conn
            with self._lock:
                self._all.append(conn)
        return conn

    @contextmanager
    def _tx(self) -> Iterator[sqlite3.Connection]:
        db = self._conn()
        db.execute("BEGIN IMMEDIATE")
        try:
            yield db
        except BaseException:
            db.execute("ROLLBACK")
            raise
        db.execute("COMMIT")

    def close(self) -> None:
        with self._lock:
            for conn in self._all:
                conn.close()
            self._all.clear()
        self._local = threading.local()

    # --- jobs ---------------------------------------------------------------------------------
    def create(self, job: Job, claim: IdempotencyClaim | None) -> tuple[Job, bool]:
        # One autocommit INSERT, serialised beforehand: no write lock is held across Python work, which
        # was the enqueue latency tail under concurrency (busy handler waits).
        doc = job.model_dump_json()
        cursor = self._conn().execute(
            "INSERT INTO jobs (id, owner, status, version, queued_at, idem_key, request_hash, doc) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING",
            (
                job.id,
                job.owner,
                job.status.value,
                job.version,
                job.queued_at,
                claim.key if claim else None,
                claim.request_hash if claim else None,
                doc,
            ),
        )
        if cursor.rowcount == 1:
            return job, True
        assert claim is not None, f"job id {job.id} already exists"
        row = (
            self._conn()
            .execute("SELECT request_hash, doc FROM jobs WHERE owner = ? AND idem_key = ?", (claim.owner, claim.key))
            .fetchone()
        )
        if row[0] != claim.request_hash:
            raise Conflict("idempotency_key was already used with a different request", code="idempotency_conflict")
        return Job.model_validate_json(row[1]), False

    def get(self, job_id: str) -> Job | None:
        row = self._conn().execute("SELECT doc FROM jobs WHERE id = ?", (job_id,)).fetchone()
        return Job.model_validate_json(row[0]) if row else None

    def modify(self, job_id: str, mutate: Mutation) -> Job | None:
        for _ in range(_CAS_RETRIES):
            current = self.get(job_id)
            if current is None:
                return None
            changed = mutate(current.model_copy(deep=True))
            if changed is None:
                return current
            changed.version = current.version + 1
            cursor = self._conn().execute(
                "UPDATE jobs SET status = ?, version = ?, doc = ? WHERE id = ? AND version = ?",
                (changed.status.value, changed.version, changed.model_dump_json(), job_id, current.version),
            )
            if cursor.rowcount == 1:
                return changed
        raise StaleWrite(f"job {job_id} kept changing under {_CAS_RETRIES} attempts to write it")

    def delete(self, job_id: str) -> None:
        with self._tx() as db:
            db.execute("DELETE FROM jobs WHERE id = ?", (job_id,))
            db.execute("DELETE FROM chunks WHERE job_id = ?", (job_id,))

    def list_by_status(
        self,
        statuses: Iterable[JobStatus],
        *,
        limit: int = 1000,
        finished_before: float | None = None,
        with_pending_callbacks: bool = False,
    ) -> list[Job]:
        wanted = [s.value for s in statuses]
        marks = ",".join("?" * len(wanted))
        where = f"status IN ({marks})"
        args: list[object] = list(wanted)
        if with_pending_callbacks:
            where += " AND json_array_length(doc, '$.callback.pending') > 0"
        if finished_before is not None:
            where += " AND json_extract(doc, '$.finished_at') < ?"
            args.append(finished_before)
        rows = (
            self._conn()
            .execute(f"SELECT doc FROM jobs WHERE {where} ORDER BY queued_at LIMIT ?", (*args, limit))
            .fetchall()
        )
        return [Job.model_validate_json(row[0]) for row in rows]

    # --- output chunks ------------------------------------------------------------------------
    def append_chunks(self, job_id: str, chunks: Iterable[Chunk]) -> int:
        rows = [(job_id, c.attempt, c.seq, c.text) for c in chunks]
        if not rows:
            return 0
        with self._tx() as db:
            before = db.total_changes
            db.executemany("INSERT OR IGNORE INTO chunks (job_id, attempt, seq, text) VALUES (?, ?, ?, ?)", rows)
            return db.total_changes - before

    def read_chunks(self, job_id: str, attempt: int, after_seq: int = -1) -> list[Chunk]:
        rows = (
            self._conn()
            .execute(
                "SELECT attempt, seq, text FROM chunks WHERE job_id = ? AND attempt = ? AND seq > ? ORDER BY seq",
                (job_id, attempt, after_seq),
            )
            .fetchall()
        )
        return [Chunk(attempt=r[0], seq=r[1], text=r[2]) for r in rows]

    # --- small records ------------------------------------------------------------------------
    def get_record(self, kind: str, key: str) -> dict[str, Any] | None:
        row = self._conn().execute("SELECT doc FROM records WHERE kind = ? AND key = ?", (kind, key)).fetchone()
        return json.loads(row[0]) if row else None

    def list_records(self, kind: str) -> list[dict[str, Any]]:
        rows = self._conn().execute("SELECT key, doc FROM records WHERE kind = ?", (kind,)).fetchall()
        return [{**json.loads(doc), "id": key} for key, doc in rows]

    def put_record(self, kind: str, key: str, value: dict[str, Any]) -> None:
        self._conn().execute(
            "INSERT INTO records (kind, key, doc) VALUES (?, ?, ?) "
            "ON CONFLICT(kind, key) DO UPDATE SET doc = excluded.doc",
            (kind, key, json.dumps(value)),
        )

    def modify_record(self, kind: str, key: str, mutate: RecordMutation) -> tuple[dict[str, Any] | None, bool]:
        # One IMMEDIATE transaction: every other writer of the file waits, so read-decide-write is atomic.
        with self._tx() as db:
            row = db.execute("SELECT doc FROM records WHERE kind = ? AND key = ?", (kind, key)).fetchone()
            changed = mutate(json.loads(row[0]) if row else None)
            if changed is None:
                return (json.loads(row[0]) if row else None), False
            db.execute(
                "INSERT INTO records (kind, key, doc) VALUES (?, ?, ?) "
                "ON CONFLICT(kind, key) DO UPDATE SET doc = excluded.doc",
                (kind, key, json.dumps(changed)),
            )
            return changed, True

    def delete_record(self, kind: str, key: str) -> None:
        self._conn().execute("DELETE FROM records WHERE kind = ? AND key = ?", (kind, key))

    # --- nonces of signed requests ------------------------------------------------------------
    def claim_nonce(self, nonce: str, now: float, window_s: float) -> bool:
        """Remember ``nonce``; ``False`` if it was already seen within ``window_s`` (a replay)."""
        with self._tx() as db:
            db.execute("DELETE FROM nonces WHERE seen_at < ?", (now - window_s,))
            cursor = db.execute(
                "INSERT INTO nonces (nonce, seen_at) VALUES (?, ?) ON CONFLICT DO NOTHING", (nonce, now)
            )
            return cursor.rowcount == 1

    # --- events -------------------------------------------------------------------------------
    def append_event(self, event: Mapping[str, Any], *, now: float, keep_s: float) -> bool:
        db = self._conn()
        cursor = db.execute(
            "INSERT INTO events (idem_key, type, subject, expire_at, doc) VALUES (?, ?, ?, ?, ?) "
            "ON CONFLICT(idem_key) DO NOTHING",
            (
                event["idempotency_key"],
                event["type"],
                event["subject"],
                now + keep_s,
                json.dumps(event, separators=(",", ":")),
            ),
        )
        if cursor.rowcount != 1:
            return False
        if (cursor.lastrowid or 0) % _PRUNE_EVERY == 0:
            db.execute("DELETE FROM events WHERE expire_at < ?", (now,))
        return True

    def list_events(
        self, *, after: str | None, types: Sequence[str] = (), subject: str | None = None, limit: int = 100
    ) -> EventPage:
        position = _event_position(after)
        where: list[str] = ["seq > ?"]
        args: list[object] = [position]
        if subject is not None:
            where.append("subject = ?")
            args.append(subject)
        if types:
            # A prefix compares the type's first characters (not LIKE, where "_" would be a wildcard).
            where.append(
                "(" + " OR ".join("substr(type, 1, ?) = ?" if t.endswith(".") else "type = ?" for t in types) + ")"
            )
            for t in types:
                args.extend((len(t), t) if t.endswith(".") else (t,))
        sql = f"SELECT seq, doc FROM events WHERE {' AND '.join(where)} ORDER BY seq LIMIT ?"
        rows = self._conn().execute(sql, (*args, limit + 1)).fetchall()
        page = rows[:limit]
        return EventPage(
            events=[json.loads(doc) for _, doc in page],
            next=str(page[-1][0]) if page else str(position),
            has_more=len(rows) > limit,
        )


def _event_position(after: str | None) -> int:
    if after is None:
        return 0
    if not after.isdigit() or len(after) > 19:
        raise InvalidRequest("since: not a cursor this store gave", code="invalid_cursor")
    return int(after)
