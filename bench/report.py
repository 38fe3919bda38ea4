"""What every benchmark prints and writes: percentiles, targets with pass/miss, Markdown tables, JSON.

Results go to ``<results dir>/<benchmark>.json`` (default ``bench/results/``, git-ignored), with the
machine they came from. Tables are Markdown, so they paste into ``docs/performance.md`` unchanged.
"""

from __future__ import annotations

import json
import math
import os
import platform
import sys
import time
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

__all__ = [
    "RESULTS_DIR",
    "Target",
    "fmt",
    "machine",
    "markdown_table",
    "percentile",
    "ratio",
    "targets_table",
    "write_results",
]

RESULTS_DIR = Path(__file__).resolve().parent / "results"


def int_list(text: str) -> list[int]:
    """``"1,8,32"`` → ``[1, 8, 32]`` (argparse type for concurrency levels)."""
    return [int(x) for x in text.split(",") if x.strip()]


def percentile(values: Iterable[float], q: float) -> float | None:
    """The q-th percentile (0-100), linear between closest ranks; ``None`` for no values."""
    data = sorted(values)
    if not data:
        return None
    pos = (len(data) - 1) * q / 100.0
    low = math.floor(pos)
    high = min(low + 1, len(data) - 1)
    return data[low] + (data[high] - data[low]) * (pos - low)


def ratio(value: float | None, baseline: float | None) -> float | None:
    if value is None or baseline is None or baseline == 0:
        return None
    return value / baseline


def fmt(value: float | int | None, digits: int = 2, suffix: str = "") -> str:
    if value is None:
        return "-"
    if isinstance(value, int):
        return f"{value}{suffix}"
    return f"{value:.{digits}f}{suffix}"


@dataclass
class Target:
    """One budget line: a measurement, its limit, and whether it passed."""

    name: str
    measured: float | None
    limit: float
    unit: str
    higher_is_better: bool = False
    note: str = ""
    strict: bool = False  # "better than": equal is not enough

    @property
    def passed(self) -> bool | None:
        if self.measured is None:
            return None
        if self.strict:
            return self.measured > self.limit if self.higher_is_better else self.measured < self.limit
        return self.measured >= self.limit if self.higher_is_better else self.measured <= self.limit

    def as_dict(self) -> dict[str, Any]:
        return asdict(self) | {"pass": self.passed}


def markdown_table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    widths = [max(len(str(h)), *(len(str(r[i])) for r in rows)) if rows else len(str(h)) for i, h in enumerate(headers)]

    def line(cells: Sequence[str]) -> str:
        return "| " + " | ".join(str(c).ljust(w) for c, w in zip(cells, widths, strict=True)) + " |"

    return "\n".join([line(headers), "|" + "|".join("-" * (w + 2) for w in widths) + "|", *map(line, rows)])


def targets_table(targets: Sequence[Target]) -> str:
    rows = []
    for t in targets:
        verdict = {True: "pass", False: "**MISS**", None: "not measured"}[t.passed]
        sign = (">" if t.higher_is_better else "<") + ("" if t.strict else "=")
        limit = f"{sign.replace('>=', '≥').replace('<=', '≤')} {t.limit:g} {t.unit}"
        measured = "-" if t.measured is None else f"{t.measured:.3g} {t.unit}"
        rows.append([t.name, measured, limit, verdict + (f" ({t.note})" if t.note else "")])
    return markdown_table(["target", "measured", "budget", "result"], rows)


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _loadavg() -> list[float] | None:
    """Other work on the machine shows here: benchmarks on a shared box are only as good as this."""
    try:
        return [float(x) for x in Path("/proc/loadavg").read_text().split()[:2]]
    except OSError:
        return None


def machine() -> dict[str, Any]:
    return {
        "nproc": os.cpu_count(),
        "cpu_model": _cpu_model(),
        "python": sys.version.split()[0],
        "implementation": platform.python_implementation(),
        "kernel": platform.release(),
        "loadavg_1m_5m": _loadavg(),
        "date_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }


def write_results(results_dir: Path, name: str, payload: dict[str, Any]) -> Path:
    """Write ``<results_dir>/<name>.json``: the payload plus the benchmark's name and the machine."""
    results_dir.mkdir(parents=True, exist_ok=True)
    path = results_dir / f"{name}.json"
    body = {"benchmark": name, "machine": machine(), **payload}
    path.write_text(json.dumps(body, indent=2, sort_keys=False, default=str) + "\n")
    return path
