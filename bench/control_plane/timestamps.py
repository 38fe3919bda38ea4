"""When things happened, as epoch seconds: the lines of a gpuq log, and the API's ISO 8601 times."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

__all__ = ["first_at", "iso_epoch", "log_times"]


def log_times(path: Path, offset: int = 0) -> list[tuple[float, str]]:
    """(epoch seconds, message) of each line of a gpuq log (``%(asctime)s`` is local time, ms)."""
    out: list[tuple[float, str]] = []
    try:
        with open(path, "rb") as f:
            f.seek(offset)
            text = f.read().decode(errors="replace")
    except OSError:
        return out
    for line in text.splitlines():
        try:
            stamp = datetime.strptime(line[:23], "%Y-%m-%d %H:%M:%S,%f").timestamp()
        except ValueError:
            continue
        out.append((stamp, line[24:]))
    return out


def first_at(lines: list[tuple[float, str]], needle: str) -> float | None:
    """The time of the first line whose message contains ``needle``."""
    return next((t for t, message in lines if needle in message), None)


def iso_epoch(value: str | None) -> float | None:
    """``2025-01-01T00:00:00.123Z`` (a job's ``started_at``) as epoch seconds."""
    return None if value is None else datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()
