"""What the supervised model server prints, read as lines: split, cleaned, matched against the operator's
log patterns, and the start-up part kept as a bounded tail.

Patterns are plain substrings, case-sensitive, as Vast's PyWorker matches its ``LogActionConfig``
(``on_load`` / ``on_error`` / ``on_info``), so a PyWorker configuration carries over as it is. In a setting
they are separated by ``|`` (``"CUDA out of memory|address already in use"``): log lines are full of
commas, and a plain substring needs no escaping. A line is matched against ``on_error`` first, then
``on_load``, then ``on_info``.

Progress bars redraw one line with ``\\r`` (tqdm, Hugging Face downloads): a carriage return ends a line
here as a newline does, so each redraw is a line of its own and the latest progress is seen at once.
"""

from __future__ import annotations

import codecs
import re
from collections import deque
from dataclasses import dataclass
from enum import StrEnum

__all__ = ["LineKind", "LineSplitter", "LogPatterns", "StartupTail", "clean_line", "parse_patterns"]

MAX_LINE_CHARS = 4096  # a longer run without a line break is cut into lines of this size
REASON_CHARS = 100  # a status reason is at most this long (a job's status_reason holds 120)

_ANSI = re.compile(r"\x1b\[[0-9;?]*[ -/]*[@-~]|\x1b[@-Z\\-_]")
# Progress-bar glyphs (block elements, box drawing) carry no words: dropped from reasons.
_BAR = re.compile(r"[\u2500-\u259f]+")
_SPACE = re.compile(r"\s+")


def parse_patterns(text: str) -> tuple[str, ...]:
    """``"a|b| c "`` → ``("a", "b", "c")``; empty parts are dropped."""
    return tuple(part.strip() for part in text.split("|") if part.strip())


def clean_line(line: str, limit: int = REASON_CHARS) -> str:
    """The line as a status reason: no terminal colours, no bar glyphs, single spaces, at most ``limit``."""
    text = _SPACE.sub(" ", _BAR.sub(" ", _ANSI.sub("", line))).strip()
    return text if len(text) <= limit else text[: limit - 1] + "…"


class LineKind(StrEnum):
    LOAD = "on_load"
    ERROR = "on_error"
    INFO = "on_info"


@dataclass(frozen=True)
class LogPatterns:
    """The substrings that say the server is up (``on_load``), cannot come up (``on_error``), or what it is
    doing meanwhile (``on_info``)."""

    on_load: tuple[str, ...] = ()
    on_error: tuple[str, ...] = ()
    on_info: tuple[str, ...] = ()

    @classmethod
    def parse(cls, on_load: str, on_error: str, on_info: str) -> LogPatterns:
        return cls(parse_patterns(on_load), parse_patterns(on_error), parse_patterns(on_info))

    def classify(self, line: str) -> LineKind | None:
        for kind, patterns in ((LineKind.ERROR, self.on_error), (LineKind.LOAD, self.on_load)):
            if any(p in line for p in patterns):
                return kind
        return LineKind.INFO if any(p in line for p in self.on_info) else None


class LineSplitter:
    """Bytes as they come from a pipe → complete lines (``\\n``, ``\\r\\n`` and ``\\r`` end one)."""

    def __init__(self) -> None:
        self._partial = ""
        self._decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")  # a character may span reads

    def feed(self, data: bytes) -> list[str]:
        text = self._partial + self._decoder.decode(data)
        parts = re.split(r"\r\n|\r|\n", text)
        self._partial = parts.pop()
        while len(self._partial) > MAX_LINE_CHARS:  # no line break for this long: hand it over in pieces
            parts.append(self._partial[:MAX_LINE_CHARS])
            self._partial = self._partial[MAX_LINE_CHARS:]
        return [p for p in parts if p.strip()]

    def close(self) -> list[str]:
        """The last line, when the output ended without a line break."""
        rest, self._partial = self._partial + self._decoder.decode(b"", final=True), ""
        return [rest] if rest.strip() else []


class StartupTail:
    """The last ``size`` lines the server printed while starting (before it was up), each at most
    ``MAX_LINE_CHARS``.

    Only start-up output is kept: once the server serves jobs its output may hold their prompts
    (vLLM logs requests), and this tail is shown on the agent's open ``/health``.
    """

    def __init__(self, size: int) -> None:
        self._lines: deque[str] = deque(maxlen=size)
        self.recording = True

    def add(self, line: str) -> None:
        if self.recording:
            self._lines.append(clean_line(line, MAX_LINE_CHARS))

    def restart(self) -> None:
        """A new server process: its start-up output is recorded (after the previous one's)."""
        self.recording = True

    def lines(self) -> list[str]:
        return list(self._lines)
