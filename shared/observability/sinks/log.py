"""The log sink: one line per event on the ``gpuq.events`` logger, always.

In JSON logs (``GPUQ_LOG_FORMAT=json``, :mod:`shared.observability.logs`) the line carries the whole
envelope as ``event``; in text logs it reads ``job.failed job_…: timeout (attempt=1 …)``.
"""

from __future__ import annotations

import logging
from typing import Any

__all__ = ["log_event", "summary"]

log = logging.getLogger("gpuq.events")

_MAX_CHARS = 400


def summary(data: dict[str, Any]) -> str:
    """``: <reason> (k=v …)`` of an event's scalar data, for a readable text line."""
    reason = data.get("reason")
    pairs = " ".join(
        f"{k}={v}" for k, v in data.items() if k != "reason" and (v is None or isinstance(v, str | int | float))
    )
    text = (f": {reason}" if reason else "") + (f" ({pairs})" if pairs else "")
    return text if len(text) <= _MAX_CHARS else text[: _MAX_CHARS - 1] + "…"


def log_event(event: dict[str, Any], level: int) -> None:
    if log.isEnabledFor(level):
        log.log(level, "%s %s%s", event["type"], event["subject"], summary(event["data"]), extra={"event": event})
