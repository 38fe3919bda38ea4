"""Events in Firestore: ``gpuq_events/{sha256(idempotency_key)}`` with ``type``, ``family`` (the part of the
type before its dot), ``subject``, ``at``, ``expire_at`` and ``doc`` (the envelope as JSON).

Once: the document's id is the hash of the event's idempotency key and ``create`` fails if it exists, so a
re-run's event is one refused write, whichever functions instance makes it.

Order: ``at`` is the server's commit timestamp (``SERVER_TIMESTAMP``), not a clock of ours. Firestore
commits are externally consistent (Spanner's commit timestamps): an event whose write began after another's
write had returned has a later commit time, whichever process or host wrote each. Every event of one subject
is written after the state change that caused it and before the next one can happen, so the store's order
is causal per subject, across functions instances; events of unrelated subjects written at the same moment
are ordered by commit time, then by document id. A strongly consistent query at read time R sees every
commit up to R, and any later commit has a later timestamp, so a reader following ``next`` never skips one.

Reading pages by ``(at, document id)``. A subject filter is an equality (index ``subject, at``); a type filter
becomes a ``family in [...]`` filter (index ``family, at``) whose exact types are then matched here; with both,
the query filters on the subject and the types are matched here. Such matching reads at most
``SCAN_LIMIT`` documents per call: a page may then hold fewer events than asked, with ``has_more`` and a
``next`` past what was read.

A TTL policy on ``expire_at`` (``gpuq deploy`` sets it) deletes events after the retention.
"""

from __future__ import annotations

import datetime
import hashlib
import json
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from shared.errors import InvalidRequest
from shared.store.base import EventPage

if TYPE_CHECKING:
    from google.cloud.firestore import Client, Query

__all__ = ["EVENTS", "SCAN_LIMIT", "append_event", "list_events"]

EVENTS = "gpuq_events"
SCAN_LIMIT = 1000


def _family(event_type: str) -> str:
    return event_type.split(".", 1)[0]


def append_event(client: Client, timeout_s: float, event: Mapping[str, Any], now: float, keep_s: float) -> bool:
    """Create the event's document; False when its idempotency key was written before."""
    from google.api_core import exceptions as gexc
    from google.cloud.firestore import SERVER_TIMESTAMP

    doc_id = hashlib.sha256(str(event["idempotency_key"]).encode()).hexdigest()
    fields = {
        "type": event["type"],
        "family": _family(str(event["type"])),
        "subject": event["subject"],
        "at": SERVER_TIMESTAMP,
        "expire_at": datetime.datetime.fromtimestamp(now + keep_s, tz=datetime.UTC),
        "doc": json.dumps(event, separators=(",", ":")),
    }
    try:
        client.collection(EVENTS).document(doc_id).create(fields, retry=None, timeout=timeout_s)
    except gexc.AlreadyExists:
        return False
    return True


def _position(snapshot: Any) -> str:
    stamp = snapshot.get("at").timestamp_pb()
    return f"{stamp.seconds}.{stamp.nanos:09d}.{snapshot.id}"


def _cursor(after: str) -> dict[str, Any]:
    from google.api_core.datetime_helpers import DatetimeWithNanoseconds
    from google.protobuf.timestamp_pb2 import Timestamp

    seconds, _, rest = after.partition(".")
    nanos, _, doc_id = rest.partition(".")
    if not (seconds.isdigit() and nanos.isdigit() and len(nanos) == 9 and len(doc_id) == 64 and doc_id.isalnum()):
        raise InvalidRequest("since: not a cursor this store gave", code="invalid_cursor")
    at = DatetimeWithNanoseconds.from_timestamp_pb(  # type: ignore[no-untyped-call]
        Timestamp(seconds=int(seconds), nanos=int(nanos))
    )
    return {"at": at, "__name__": doc_id}


def _matches(event_type: str, types: Sequence[str]) -> bool:
    return not types or any(event_type.startswith(t) if t.endswith(".") else event_type == t for t in types)


def _query(client: Client, after: str | None, types: Sequence[str], subject: str | None) -> Query:
    from google.cloud.firestore import FieldFilter
    from google.cloud.firestore_v1.field_path import FieldPath

    query: Any = client.collection(EVENTS)
    if subject is not None:
        query = query.where(filter=FieldFilter("subject", "==", subject))
    elif types:
        query = query.where(filter=FieldFilter("family", "in", sorted({_family(t) for t in types})))
    query = query.order_by("at").order_by(FieldPath.document_id())
    if after is not None and after != "0":  # "0": the start, before any event
        query = query.start_after(_cursor(after))
    return query  # type: ignore[no-any-return]


def list_events(
    client: Client,
    retrying: dict[str, Any],
    *,
    after: str | None,
    types: Sequence[str],
    subject: str | None,
    limit: int,
) -> EventPage:
    """A page of events after ``after`` (see the module docstring)."""
    query = _query(client, after, types, subject)
    exact = subject is None and not types
    scan = limit + 1 if exact else max(limit + 1, SCAN_LIMIT)
    found: list[dict[str, Any]] = []
    position = after or "0"
    scanned = 0
    for snapshot in query.limit(scan).stream(**retrying):
        scanned += 1
        if _matches(str(snapshot.get("type")), types):
            if len(found) == limit:
                return EventPage(found, position, True)
            found.append(json.loads(snapshot.get("doc")))
        position = _position(snapshot)
    return EventPage(found, position, scanned == scan)
