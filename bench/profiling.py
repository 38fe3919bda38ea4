"""Sampling profiles of the processes a benchmark measures, with py-spy (``pip install py-spy``).

``Profiler.attach(name, pid)`` starts ``py-spy record --format raw`` on a running process; ``stop()``
ends every recording (SIGINT: py-spy writes its file) and summarizes it: the functions with the
most samples: *self* (the frame on top of the stack) and *inclusive* (anywhere in the stack).
Profiling perturbs what is measured: numbers from a profiled run are for finding causes only.
"""

from __future__ import annotations

import shutil
import signal
import subprocess
import sys
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import IO

__all__ = ["Profiler", "print_profiles", "summarize"]


def _py_spy() -> str:
    found = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
    if not Path(found).exists():
        raise RuntimeError("py-spy is not installed: .venv/bin/pip install py-spy")
    return found


def _frame_key(frame: str) -> str:
    """``fn (path/to/file.py:12)`` -> ``fn (file.py)``: lines of one function counted together."""
    name, _, where = frame.partition(" (")
    return f"{name} ({Path(where.rstrip(')').rsplit(':', 1)[0]).name})" if where else name


def summarize(raw: Path, top: int = 15) -> dict[str, list[tuple[str, float]]]:
    """Share of samples per function in a py-spy raw (collapsed) file: ``self`` and ``inclusive``."""
    own: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    total = 0
    for line in raw.read_text(errors="replace").splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        frames = [
            _frame_key(f)
            for f in stack.split(";")
            if f and not f.startswith("process ") and not f.startswith("thread ")
        ]
        if not frames:
            continue
        total += count
        own[frames[-1]] += count
        for key in set(frames):
            inclusive[key] += count
    if not total:
        return {"self": [], "inclusive": []}
    return {
        "self": [(k, v / total) for k, v in own.most_common(top)],
        "inclusive": [(k, v / total) for k, v in inclusive.most_common(top)],
        "samples": [("total", float(total))],
    }


def print_profiles(profiles: dict[str, dict[str, list[tuple[str, float]]]]) -> None:
    from bench.report import markdown_table

    for name, summary in profiles.items():
        print(f"\n## Profile: {name} (share of samples; self = on top of the stack)\n")
        print(
            markdown_table(
                ["self", "function", "inclusive", "function "],
                [
                    [f"{a[1]:.1%}", a[0], f"{b[1]:.1%}", b[0]]
                    for a, b in zip(summary["self"], summary["inclusive"], strict=False)
                ],
            )
        )


@dataclass
class _Recording:
    name: str
    popen: subprocess.Popen[bytes]
    output: Path
    log: IO[bytes]


class Profiler:
    def __init__(self, out_dir: Path, rate_hz: int = 250, *, gil_only: bool = False) -> None:
        self.out_dir = out_dir
        self.rate_hz = rate_hz
        self.gil_only = gil_only  # sample only the thread holding the GIL: where Python CPU goes
        self._recordings: list[_Recording] = []
        out_dir.mkdir(parents=True, exist_ok=True)

    def attach(self, name: str, pid: int) -> None:
        output = self.out_dir / f"{name}.txt"
        log = open(self.out_dir / f"{name}.py-spy.log", "wb")  # noqa: SIM115 - closed in stop()
        popen = subprocess.Popen(
            [
                _py_spy(),
                "record",
                "--format",
                "raw",
                "--rate",
                str(self.rate_hz),
                "--nonblocking",
                *(["--gil"] if self.gil_only else []),
                "--output",
                str(output),
                "--pid",
                str(pid),
            ],
            stdout=subprocess.DEVNULL,
            stderr=log,
        )
        self._recordings.append(_Recording(name, popen, output, log))

    def stop(self) -> dict[str, dict[str, list[tuple[str, float]]]]:
        out = {}
        for rec in self._recordings:
            rec.popen.send_signal(signal.SIGINT)
        for rec in self._recordings:
            try:
                rec.popen.wait(timeout=30)
            except subprocess.TimeoutExpired:
                rec.popen.kill()
                rec.popen.wait()
            rec.log.close()
            if rec.output.exists():
                out[rec.name] = summarize(rec.output)
        self._recordings.clear()
        return out
