"""Function cold start: import time of each function's entry module in a fresh interpreter.

    .venv/bin/python -m bench.import_time [--runs 7] [--modules functions.enqueue,functions.trigger,...]

Each measure is the median of ``--runs`` fresh interpreters (after one unmeasured run, so the
byte-code cache is warm, as in a deployed function):

- **import wall**: a ``perf_counter`` around ``import <module>`` inside the fresh interpreter: what a
  cold start pays before the function can answer (the budget's measure);
- **importtime**: ``python -X importtime -c "import <module>"``, the cumulative time of the import
  statement's top-level entries (it adds its own overhead), with the heaviest packages it pulled in;
- **process**: ``python -c "import <module>"`` wall time minus ``python -c "pass"``, for reference: it
  also counts tearing the interpreter down at exit, which a serving function never pays.

Results: table on stdout, ``bench/results/import_time.json``.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from bench.report import RESULTS_DIR, Target, fmt, markdown_table, targets_table, write_results

__all__ = ["main", "parse_importtime"]

REPO = Path(__file__).resolve().parents[1]
MODULES = ("functions.enqueue", "functions.trigger", "functions.dispatch", "functions.reaper")
BUDGET_MS = 300.0


def log(message: str) -> None:
    print(f"[import_time {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def _timed_import(module: str) -> float:
    code = (
        f"import time, sys; t = time.perf_counter(); import {module}; sys.stdout.write(repr(time.perf_counter() - t))"
    )
    done = subprocess.run(
        [sys.executable, "-c", code],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
        env=_clean_env(),
    )
    if done.returncode != 0:
        raise RuntimeError(f"import {module} failed:\n{done.stderr[-2000:]}")
    return float(done.stdout.strip().splitlines()[-1])


def _run(code: str, *flags: str) -> tuple[float, str]:
    t0 = time.perf_counter()
    done = subprocess.run(
        [sys.executable, *flags, "-c", code],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
        env=_clean_env(),
    )
    wall = time.perf_counter() - t0
    if done.returncode != 0:
        raise RuntimeError(f"python -c {code!r} failed:\n{done.stderr[-2000:]}")
    return wall, done.stderr


def _clean_env() -> dict[str, str]:
    import os

    return {k: v for k, v in os.environ.items() if not k.startswith(("GPUQ_", "PYTHON"))}


def parse_importtime(stderr: str, module: str) -> tuple[float, list[tuple[str, float]]]:
    """Total µs of ``import module`` (its top-level entries) and the heaviest packages (root, µs) it imported."""
    root = module.split(".")[0]
    total = 0.0
    packages: dict[str, tuple[int, float]] = {}  # root package -> (depth, cumulative µs) of its shallowest entry
    for line in stderr.splitlines():
        if not line.startswith("import time:") or "|" not in line or "self [us]" in line:
            continue
        _, cumulative, name = line.split("|", 2)
        depth = (len(name) - len(name.lstrip(" ")) - 1) // 2
        name = name.strip()
        cum_us = float(cumulative.strip())
        if depth == 0 and (name == root or name.startswith(root + ".")):
            total += cum_us
        if depth >= 1:
            key = name.split(".")[0]
            if key not in packages or depth < packages[key][0]:
                packages[key] = (depth, cum_us)
    heaviest = sorted(((k, v[1]) for k, v in packages.items() if k != root), key=lambda kv: -kv[1])
    return total, heaviest[:8]


def measure(modules: list[str], runs: int) -> list[dict[str, Any]]:
    for module in modules:  # compile byte code, warm the page cache
        _run(f"import {module}")
    base: list[float] = []
    imports: dict[str, list[float]] = {m: [] for m in modules}
    walls: dict[str, list[float]] = {m: [] for m in modules}
    importtimes: dict[str, list[float]] = {m: [] for m in modules}
    heaviest: dict[str, list[tuple[str, float]]] = {}
    for i in range(runs):
        log(f"run {i + 1}/{runs}")
        base.append(_run("pass")[0])
        for module in modules:
            imports[module].append(_timed_import(module))
            walls[module].append(_run(f"import {module}")[0])
            total, heavy = parse_importtime(_run(f"import {module}", "-X", "importtime")[1], module)
            importtimes[module].append(total)
            heaviest.setdefault(module, heavy)
    base_ms = statistics.median(base) * 1000
    return [
        {
            "module": m,
            "import_ms": statistics.median(imports[m]) * 1000,
            "import_ms_min": min(imports[m]) * 1000,
            "process_ms": statistics.median(walls[m]) * 1000 - base_ms,
            "interpreter_ms": base_ms,
            "importtime_ms": statistics.median(importtimes[m]) / 1000,
            "heaviest_ms": {k: v / 1000 for k, v in heaviest[m]},
            "runs": runs,
        }
        for m in modules
    ]


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="bench.import_time", description=__doc__.split("\n")[0])
    p.add_argument("--runs", type=int, default=7)
    p.add_argument("--modules", default=",".join(MODULES))
    p.add_argument("--results-dir", type=Path, default=RESULTS_DIR)
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    started = time.monotonic()
    rows = measure([m.strip() for m in args.modules.split(",") if m.strip()], args.runs)
    targets = [
        Target(f"import {r['module']} (fresh interpreter, median)", r["import_ms"], BUDGET_MS, "ms") for r in rows
    ]
    print(f"\n## Function cold start: import time (median of {args.runs} fresh interpreters)\n")
    print(
        markdown_table(
            ["module", "import ms", "min ms", "-X importtime ms", "process - bare ms", "heaviest imports (ms)"],
            [
                [
                    r["module"],
                    fmt(r["import_ms"], 0),
                    fmt(r["import_ms_min"], 0),
                    fmt(r["importtime_ms"], 0),
                    fmt(r["process_ms"], 0),
                    ", ".join(f"{k} {v:.0f}" for k, v in list(r["heaviest_ms"].items())[:5]),
                ]
                for r in rows
            ],
        )
    )
    print(f"\n(bare interpreter start: {fmt(rows[0]['interpreter_ms'], 0)} ms)" if rows else "")
    print("\n## Targets\n")
    print(targets_table(targets))
    path = write_results(
        args.results_dir,
        "import_time",
        {
            "settings": {"runs": args.runs, "modules": args.modules},
            "modules": rows,
            "targets": [t.as_dict() for t in targets],
            "duration_s": time.monotonic() - started,
        },
    )
    print(f"\nresults: {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
