"""Values as Ollama's Go server writes and parses them: ``encoding/json`` output, ``%q``, RFC 3339 with
nanoseconds, ``time.ParseDuration`` and ``api.Duration`` (``keep_alive``)."""

from __future__ import annotations

import json
import re
import time
from typing import Any, Final

__all__ = ["FOREVER_NS", "dumps", "go_quote", "now", "parse_keep_alive", "rfc3339"]


FOREVER_NS: Final = 2**63 - 1  # Go's math.MaxInt64 duration, what Ollama uses for keep_alive < 0


_GO_ESCAPES: Final = {
    "<": "\\u003c",
    ">": "\\u003e",
    "&": "\\u0026",
    "\u2028": "\\u2028",
    "\u2029": "\\u2029",
}
_GO_ESCAPE_RE: Final = re.compile("[<>&\u2028\u2029]")


def dumps(obj: Any) -> str:
    """JSON as Go's encoding/json writes it: compact, UTF-8, HTML characters escaped."""
    s = json.dumps(obj, ensure_ascii=False, separators=(",", ":"))
    return _GO_ESCAPE_RE.sub(lambda m: _GO_ESCAPES[m.group(0)], s) if _GO_ESCAPE_RE.search(s) else s


def go_quote(s: str) -> str:
    """Go's %q for ordinary strings."""
    return json.dumps(s, ensure_ascii=False)


def rfc3339(ns: int) -> str:
    """Go's time.RFC3339Nano in UTC: trailing zeros of the fraction trimmed."""
    sec, frac = divmod(ns, 1_000_000_000)
    base = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(sec))
    if frac:
        return f"{base}.{frac:09d}".rstrip("0") + "Z"
    return base + "Z"


class _NowCache:
    """created_at for every token without a strftime per token."""

    def __init__(self) -> None:
        self._cached: tuple[int, str] = (-1, "")  # one attribute, so threads never see half an update

    def __call__(self) -> str:
        sec, frac = divmod(time.time_ns(), 1_000_000_000)
        cached_sec, base = self._cached
        if sec != cached_sec:
            base = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(sec))
            self._cached = (sec, base)
        if frac:
            return f"{base}.{frac:09d}".rstrip("0") + "Z"
        return base + "Z"


now = _NowCache()

_DURATION_UNITS: Final = {
    "ns": 1,
    "us": 1_000,
    "\u00b5s": 1_000,
    "\u03bcs": 1_000,
    "ms": 1_000_000,
    "s": 1_000_000_000,
    "m": 60_000_000_000,
    "h": 3_600_000_000_000,
}
_DURATION_PART: Final = re.compile(r"(\d*)(?:\.(\d*))?")


def _parse_go_duration(text: str) -> int:
    """time.ParseDuration, in nanoseconds, with Go's error messages."""
    quoted = '"' + text + '"'
    s = text
    neg = False
    if s[:1] in ("+", "-"):
        neg = s[0] == "-"
        s = s[1:]
    if s == "0":
        return 0
    if not s:
        raise ValueError(f"time: invalid duration {quoted}")
    total = 0.0
    while s:
        m = _DURATION_PART.match(s)
        assert m is not None  # the pattern matches the empty string
        whole, frac = m.group(1), m.group(2)
        if not whole and not frac:
            raise ValueError(f"time: invalid duration {quoted}")
        s = s[m.end() :]
        i = 0
        while i < len(s) and s[i] != "." and not s[i].isdigit():
            i += 1
        unit, s = s[:i], s[i:]
        if not unit:
            raise ValueError(f"time: missing unit in duration {quoted}")
        if unit not in _DURATION_UNITS:
            raise ValueError(f'time: unknown unit "{unit}" in duration {quoted}')
        total += float(f"{whole or '0'}.{frac or '0'}") * _DURATION_UNITS[unit]
    return -int(total) if neg else int(total)


def _go_type_name(value: Any) -> str:
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, (int, float)):
        return "float64"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "[]interface {}"
    if isinstance(value, dict):
        return "map[string]interface {}"
    return "<nil>"


def parse_keep_alive(value: Any) -> int:
    """api.Duration.UnmarshalJSON: number = seconds, string = Go duration, negative = forever."""
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        raise ValueError(f"Unsupported type: '{_go_type_name(value)}'")
    if isinstance(value, str):
        ns = _parse_go_duration(value)
    else:
        if value < 0:
            return FOREVER_NS
        ns = int(value * 1_000_000_000)
    return FOREVER_NS if ns < 0 else min(ns, FOREVER_NS)
