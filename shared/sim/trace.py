"""Reading (and writing) request-trace CSVs in the Azure LLM inference trace format.

Format: a header ``TIMESTAMP,ContextTokens,GeneratedTokens`` then one request per line, ``TIMESTAMP`` being
``YYYY-MM-DD HH:MM:SS[.f...]`` with up to 9 fractional digits (the Azure 2023 trace has 7, one more than
``datetime`` parses, so timestamps are parsed by hand into integer nanoseconds: offsets are exact). A missing
trailing newline, a UTF-8 BOM and blank lines are fine. Rows are expected sorted by time; if they are not
they are sorted (stably).

One hour of a shared service is far denser than one team's job runner, so ``load_trace`` can

* **thin** it: keep each request independently with probability ``thin`` (draws from
  ``random.Random(seed)``, one per row in file order, so for one seed a smaller ``thin`` keeps a subset of
  what a larger one keeps), and
* **stretch** it: multiply the time offsets by ``stretch``.

Offsets are measured from the first *kept* request, so a loaded trace always starts at 0.
"""

from __future__ import annotations

import csv
import random
import re
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Final

__all__ = ["COLUMNS", "TraceRequest", "load_trace", "parse_timestamp_ns", "write_trace"]

COLUMNS: Final[tuple[str, str, str]] = ("TIMESTAMP", "ContextTokens", "GeneratedTokens")

_TIMESTAMP = re.compile(r"(\d{4})-(\d{2})-(\d{2})[ T](\d{2}):(\d{2}):(\d{2})(?:\.(\d{1,9}))?")
_NS_PER_S: Final[int] = 1_000_000_000
_WRITE_EPOCH: Final[datetime] = datetime(2023, 11, 16, 18, 0, 0)


@dataclass(frozen=True, slots=True)
class TraceRequest:
    """One request: arrival offset (seconds from the first kept request, after stretch) and token counts."""

    offset_s: float
    context_tokens: int
    generated_tokens: int


def parse_timestamp_ns(text: str) -> int:
    """``YYYY-MM-DD HH:MM:SS[.f{1,9}]`` -> integer nanoseconds since 0001-01-01 (no time zone, no leap seconds)."""
    m = _TIMESTAMP.fullmatch(text.strip())
    if m is None:
        raise ValueError(f"bad timestamp {text!r} (expected YYYY-MM-DD HH:MM:SS.fffffff)")
    year, month, day, hour, minute, second = (int(g) for g in m.groups()[:6])
    frac = m.group(7) or ""
    if hour > 23 or minute > 59 or second > 59:
        raise ValueError(f"bad time of day in timestamp {text!r}")
    days = date(year, month, day).toordinal()  # raises ValueError on an impossible date
    seconds = days * 86_400 + hour * 3_600 + minute * 60 + second
    return seconds * _NS_PER_S + int(frac.ljust(9, "0") or "0")


def _read_rows(path: Path) -> list[tuple[int, int, int]]:
    rows: list[tuple[int, int, int]] = []
    with path.open("r", encoding="utf-8-sig", newline="") as fh:
        reader = csv.reader(fh)
        header = next(reader, None)
        if header is None:
            raise ValueError(f"{path}: empty file (expected a header {','.join(COLUMNS)})")
        names = [h.strip() for h in header]
        try:
            idx = [names.index(col) for col in COLUMNS]
        except ValueError:
            raise ValueError(f"{path}: header {names!r} lacks one of the columns {list(COLUMNS)}") from None
        width = max(idx) + 1
        for row in reader:
            if not row or all(not cell.strip() for cell in row):
                continue
            line = reader.line_num
            if len(row) < width:
                raise ValueError(f"{path}:{line}: expected {len(names)} columns, got {len(row)}")
            try:
                ts = parse_timestamp_ns(row[idx[0]])
                context = int(row[idx[1]])
                generated = int(row[idx[2]])
            except ValueError as exc:
                raise ValueError(f"{path}:{line}: {exc}") from None
            if context < 0 or generated < 0:
                raise ValueError(f"{path}:{line}: negative token count")
            rows.append((ts, context, generated))
    if any(rows[i][0] > rows[i + 1][0] for i in range(len(rows) - 1)):
        rows.sort(key=lambda r: r[0])
    return rows


def load_trace(path: str | Path, *, thin: float = 1.0, stretch: float = 1.0, seed: int = 0) -> list[TraceRequest]:
    """Load a trace CSV, keep each request with probability ``thin`` (seeded), multiply offsets by ``stretch``.

    Returns the kept requests in arrival order, ``offset_s`` measured from the first kept one (empty list if
    nothing was kept). Raises ``ValueError`` on a malformed file or parameters, ``OSError`` if unreadable.
    """
    if not 0.0 < thin <= 1.0:
        raise ValueError(f"thin must be in (0, 1], got {thin!r}")
    if not 0.0 < stretch < float("inf"):
        raise ValueError(f"stretch must be a positive finite number, got {stretch!r}")
    rows = _read_rows(Path(path))
    if thin < 1.0:
        rng = random.Random(seed)
        rows = [r for r in rows if rng.random() < thin]
    if not rows:
        return []
    t0 = rows[0][0]
    scale = stretch / _NS_PER_S
    return [TraceRequest((ts - t0) * scale, context, generated) for ts, context, generated in rows]


def write_trace(path: str | Path, requests: Iterable[TraceRequest], *, start: datetime = _WRITE_EPOCH) -> None:
    """Write requests in the same CSV format (7 fractional digits, no trailing newline, like the Azure file).

    Offsets are rounded to 100 ns. Meant for tests and synthetic benchmarks.
    """
    lines = [",".join(COLUMNS)]
    for req in requests:
        if req.offset_s < 0:
            raise ValueError(f"negative offset {req.offset_s!r}")
        ticks = round(req.offset_s * 10_000_000)  # 100 ns units
        stamp = start + timedelta(microseconds=ticks // 10)
        text = f"{stamp:%Y-%m-%d %H:%M:%S}.{stamp.microsecond:06d}{ticks % 10}"
        lines.append(f"{text},{req.context_tokens},{req.generated_tokens}")
    Path(path).write_text("\n".join(lines), encoding="utf-8")
