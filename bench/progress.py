"""A benchmark's progress lines: on stderr, so that stdout carries only its report."""

from __future__ import annotations

import sys
import time
from collections.abc import Callable

__all__ = ["progress_log"]


def progress_log(benchmark: str) -> Callable[[str], None]:
    """``log(message)`` printing ``[<benchmark> HH:MM:SS] message`` to stderr, flushed at once."""

    def log(message: str) -> None:
        print(f"[{benchmark} {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)

    return log
