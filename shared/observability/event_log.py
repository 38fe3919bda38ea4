"""``GET /v1/events``: the recent events read back from the store, oldest first, a page at a time.

Query: ``since`` (an opaque cursor from an earlier answer's ``next``; absent: from the oldest kept),
``type`` (comma-separated exact types or prefixes ending in ``.``: ``instance.,job.failed``), ``subject``
(one job or box id), ``limit`` (1..500, default 100). Answer::

    {"object": "list", "data": [<event>, ...], "has_more": bool, "next": "<cursor>"}

``next`` is always there: after the last event returned (or past what the store looked at), or the same
position as ``since`` when nothing is new, so a poller passes it back forever. Any API key reads every
event of the deployment (as ``/v1/instances`` and ``/v1/cost`` show every box).
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from shared.errors import InvalidRequest, ValidationFailed
from shared.observability.events import EVENT_FAMILIES, EVENT_TYPES
from shared.security.headers import printable

if TYPE_CHECKING:
    from shared.controlplane import ControlPlane

__all__ = [
    "CURSOR_PATTERN",
    "DEFAULT_LIMIT",
    "MAX_LIMIT",
    "QUERY_PARAMS",
    "EventQuery",
    "decode_cursor",
    "encode_cursor",
    "parse_event_query",
    "read_events",
]

DEFAULT_LIMIT = 100
MAX_LIMIT = 500
QUERY_PARAMS = frozenset({"since", "type", "subject", "limit"})
CURSOR_PATTERN = r"^ev1\.[A-Za-z0-9_-]{1,300}$"
_CURSOR = re.compile(CURSOR_PATTERN)
_SUBJECT = re.compile(r"^[\x21-\x7e]{1,200}$")
_PREFIX = "ev1."


@dataclass(frozen=True, slots=True)
class EventQuery:
    after: str | None  # the store's position (the decoded cursor)
    types: tuple[str, ...]
    subject: str | None
    limit: int


def encode_cursor(position: str) -> str:
    return _PREFIX + base64.urlsafe_b64encode(position.encode()).decode().rstrip("=")


def decode_cursor(cursor: str) -> str:
    """The store's position inside a cursor; :class:`InvalidRequest` (``invalid_cursor``) if it is not one."""
    if not _CURSOR.fullmatch(cursor):
        raise InvalidRequest("since: not a cursor from this API (pass an answer's `next`)", code="invalid_cursor")
    raw = cursor[len(_PREFIX) :]
    try:
        position = base64.urlsafe_b64decode(raw + "=" * (-len(raw) % 4)).decode("ascii")
    except (binascii.Error, UnicodeDecodeError, ValueError):
        raise InvalidRequest("since: not a cursor from this API", code="invalid_cursor") from None
    if not position.isprintable():
        raise InvalidRequest("since: not a cursor from this API", code="invalid_cursor")
    return position


def _types(raw: str | None) -> tuple[str, ...]:
    if raw is None:
        return ()
    wanted = tuple(raw.split(","))
    unknown = [t for t in wanted if t not in EVENT_TYPES and t not in EVENT_FAMILIES]
    if unknown:
        raise ValidationFailed(
            f"type: unknown event type or prefix {printable(unknown[0], 60)!r} (prefixes: "
            f"{', '.join(sorted(EVENT_FAMILIES))})",
            code="unknown_event_type",
        )
    return wanted


def _limit(raw: str | None) -> int:
    if raw is None:
        return DEFAULT_LIMIT
    if not raw.isdigit() or not 1 <= int(raw) <= MAX_LIMIT:
        raise ValidationFailed(f"limit: an integer from 1 to {MAX_LIMIT}", code="invalid_limit")
    return int(raw)


def parse_event_query(args: Mapping[str, str]) -> EventQuery:
    """The query string's parameters, checked: unknown ones and bad values are refused (422, a bad cursor 400)."""
    unknown = sorted(set(args) - QUERY_PARAMS)
    if unknown:
        raise ValidationFailed(f"{', '.join(printable(u, 40) for u in unknown)}: unknown query parameter")
    subject = args.get("subject")
    if subject is not None and not _SUBJECT.fullmatch(subject):
        raise ValidationFailed("subject: 1 to 200 printable characters, no spaces", code="invalid_subject")
    since = args.get("since")
    return EventQuery(
        after=decode_cursor(since) if since is not None else None,
        types=_types(args.get("type")),
        subject=subject,
        limit=_limit(args.get("limit")),
    )


def read_events(cp: ControlPlane, query: EventQuery) -> dict[str, Any]:
    """One page of the answer (see the module docstring)."""
    page = cp.store.list_events(after=query.after, types=query.types, subject=query.subject, limit=query.limit)
    return {"object": "list", "data": page.events, "has_more": page.has_more, "next": encode_cursor(page.next)}
