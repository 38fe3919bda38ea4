"""Log lines of every component (the functions, the agent), text or JSON (``GPUQ_LOG_FORMAT``).

``text`` (dev, the default): ``2025-01-31 12:00:00,123 INFO gpuq.dispatch: job … handed to …``.
``json`` (production; ``gpuq deploy`` sets it): one object per line, with the keys Cloud Logging reads
from a function's output (``severity``, ``message``, ``time``) plus ``logger`` and ``component``; an
event's line carries its envelope as ``event``, an exception its traceback as ``exception``. In JSON mode
warnings and uncaught exceptions of threads go through logging too, so no line of ours is anything else.
"""

from __future__ import annotations

import json
import logging
import sys
import threading
from datetime import UTC, datetime
from typing import Any

from shared.settings import LogSettings

__all__ = ["TEXT_FORMAT", "JsonFormatter", "configure_logging", "formatter"]

TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
_MARK = "_gpuq"  # on the handler this module installed, so configuring twice adds no second one


class JsonFormatter(logging.Formatter):
    """One JSON object per record."""

    def __init__(self, component: str) -> None:
        super().__init__()
        self.component = component

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "time": self.formatTime(record),
            "severity": record.levelname,
            "logger": record.name,
            "component": self.component,
            "message": record.getMessage(),
        }
        event = getattr(record, "event", None)
        if event is not None:
            line["event"] = event
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        if record.stack_info:
            line["stack"] = self.formatStack(record.stack_info)
        return json.dumps(line, separators=(",", ":"), default=str)

    def formatTime(self, record: logging.LogRecord, datefmt: str | None = None) -> str:
        return datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def formatter(settings: LogSettings, component: str) -> logging.Formatter:
    return JsonFormatter(component) if settings.format == "json" else logging.Formatter(TEXT_FORMAT)


def _log_thread_exception(args: threading.ExceptHookArgs) -> None:
    if args.exc_type is SystemExit:
        return
    name = args.thread.name if args.thread else "?"
    exc_info = (args.exc_type, args.exc_value or args.exc_type(), args.exc_traceback)
    logging.getLogger("gpuq").error("uncaught exception in thread %s", name, exc_info=exc_info)


def configure_logging(settings: LogSettings, component: str) -> None:
    """One handler on the root logger, writing to stderr in the chosen format (once per process)."""
    root = logging.getLogger()
    if any(getattr(h, _MARK, False) for h in root.handlers):
        return
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(formatter(settings, component))
    setattr(handler, _MARK, True)
    root.addHandler(handler)
    root.setLevel(settings.level)
    logging.getLogger("httpx").setLevel(logging.WARNING)  # one line per request is noise here
    if settings.format == "json":
        logging.captureWarnings(True)
        threading.excepthook = _log_thread_exception
        for name in ("gunicorn.error", "gunicorn.access"):  # the server's own lines, in this worker
            for other in logging.getLogger(name).handlers:
                other.setFormatter(handler.formatter)
