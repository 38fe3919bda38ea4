"""How the ``gpuq`` command writes to a terminal: tables and the one live waiting line, with colour only
on a TTY (``rich``) and plain, parseable text otherwise (pipes, logs, tests)."""

from __future__ import annotations

import sys
import time
from collections.abc import Sequence
from typing import TextIO

from rich.console import Console
from rich.table import Table

__all__ = ["WaitingLine", "plain_table", "print_table"]


def plain_table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """Columns padded with two spaces, no colour: what a pipe or a log gets."""
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    lines = ["  ".join(str(cell).ljust(w) for cell, w in zip(r, widths, strict=True)).rstrip() for r in [header, *rows]]
    return "\n".join(lines)


def print_table(
    header: Sequence[str], rows: Sequence[Sequence[str]], *, title: str | None = None, out: TextIO | None = None
) -> None:
    out = out or sys.stdout
    if not out.isatty():
        if title:
            print(title, file=out)
        print(plain_table(header, rows), file=out)
        return
    table = Table(title=title, header_style="bold", box=None, pad_edge=False)
    for name in header:
        table.add_column(name)
    for row in rows:
        table.add_row(*(str(cell) for cell in row))
    Console(file=out).print(table)


class WaitingLine:
    """While a job waits: one status line rewritten in place on a TTY (reason, elapsed time, the box's
    phase); a new plain line only when the reason changes otherwise."""

    def __init__(self, out: TextIO | None = None) -> None:
        self._out = out or sys.stderr
        self._tty = self._out.isatty()
        self._console = Console(file=self._out) if self._tty else None
        self._status = self._console.status("") if self._console is not None else None
        self._last: str | None = None
        self._started = time.monotonic()

    def update(self, status: str, reason: str | None, box: str | None = None) -> None:
        words = [status, *(w for w in (reason and reason.replace("_", " "), box and f"box {box}") if w)]
        text = " · ".join(words)
        if self._status is not None:
            self._status.update(f"{text} · {time.monotonic() - self._started:.1f}s")
            if self._last is None:
                self._status.start()
        elif text != self._last:
            print(f"… {text}", file=self._out, flush=True)
        self._last = text

    def done(self) -> None:
        if self._status is not None and self._last is not None:
            self._status.stop()
        self._last = None
