"""All benchmarks, one after the other, within a time budget: what ``make bench`` runs.

    .venv/bin/python -m bench.run_all [--budget-s 900] [--results-dir bench/results]

Each benchmark runs in its own interpreter (a clean process tree) and prints its tables; this
script then prints every target with pass/miss and writes ``summary.json`` and ``summary.md``
(the machine and every table, ready for ``docs/performance.md``) beside the benchmarks' JSON.
Exits non-zero if a benchmark failed or ran out of time (a missed target is a result, not a failure).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from bench.report import RESULTS_DIR, Target, machine, targets_table

__all__ = ["BENCHMARKS", "QUICK", "main"]

REPO = Path(__file__).resolve().parents[1]
# (module, share of the remaining budget it may use); the longest goes last and takes what is left
BENCHMARKS: tuple[tuple[str, float], ...] = (
    ("bench.import_time", 0.15),
    ("bench.control_plane", 0.35),
    ("bench.fleet", 0.25),
    ("bench.openai_front", 0.25),
    ("bench.agent_stream", 1.0),
)
# Tiny settings: a few seconds each, so a smoke test can run every benchmark (numbers meaningless).
QUICK: dict[str, list[str]] = {
    "bench.import_time": ["--runs", "1"],
    "bench.control_plane": [
        "--store-jobs",
        "50",
        "--queue-pushes",
        "20",
        "--enqueue-requests",
        "30",
        "--concurrency",
        "1,4",
        "--warm-jobs",
        "2",
        "--cycles",
        "1",
        "--snooze-s",
        "0.5",
    ],
    "bench.fleet": ["--boxes", "1,2", "--jobs", "6", "--tokens", "10", "--token-delay-ms", "5"],
    "bench.openai_front": ["--rounds", "2", "--held", "4", "--cold-s", "1"],
    "bench.agent_stream": [
        "--rounds",
        "1",
        "--streams",
        "1,4",
        "--singles",
        "1",
        "--tokens",
        "10",
        "--throughput-rounds",
        "1",
        "--throughput-streams",
        "1,4",
        "--cpu-requests",
        "8",
        "--cpu-concurrency",
        "4",
        "--idle-s",
        "0.2",
    ],
}
SHUTDOWN_MARGIN_S = 45.0  # a benchmark stops starting rounds at --max-s; stopping its servers takes a while


def _targets(result: dict[str, Any]) -> list[Target]:
    fields = ("name", "measured", "limit", "unit", "higher_is_better", "note", "strict")
    return [Target(**{k: t[k] for k in fields if k in t}) for t in result.get("targets", [])]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="bench.run_all", description=__doc__.split("\n")[0])
    p.add_argument("--budget-s", type=float, default=900.0, help="the whole run's time limit")
    p.add_argument("--results-dir", type=Path, default=RESULTS_DIR)
    p.add_argument("--quick", action="store_true", help="tiny settings (a smoke run: numbers mean nothing)")
    p.add_argument("--only", default="", help="comma-separated modules to run (default: all)")
    args = p.parse_args(argv)
    only = {m.strip() for m in args.only.split(",") if m.strip()}
    selected = [(m, share) for m, share in BENCHMARKS if not only or m in only]
    started = time.monotonic()
    outputs, failures = run_benchmarks(selected, args, started)
    write_summary(selected, args.results_dir, outputs, failures, started)
    return 1 if failures else 0


def run_benchmarks(
    selected: list[tuple[str, float]], args: argparse.Namespace, started: float
) -> tuple[list[str], list[str]]:
    """Each benchmark in its own interpreter, within its share of what is left: their stdouts, and what failed."""
    outputs: list[str] = []
    failures: list[str] = []
    for module, share in selected:
        remaining = args.budget_s - (time.monotonic() - started)
        if remaining < 60:
            failures.append(f"{module}: skipped, out of time")
            continue
        allowed = remaining * share
        cmd = [sys.executable, "-m", module, "--results-dir", str(args.results_dir)]
        cmd += QUICK[module] if args.quick else []
        if module != "bench.import_time":
            cmd += ["--max-s", f"{max(30.0, allowed - SHUTDOWN_MARGIN_S):.0f}"]
        print(f"\n# {module}\n", flush=True)
        try:
            done = subprocess.run(cmd, cwd=REPO, stdout=subprocess.PIPE, text=True, timeout=allowed + 60, check=False)
        except subprocess.TimeoutExpired:
            failures.append(f"{module}: killed after {allowed + 60:.0f}s")
            continue
        print(done.stdout, flush=True)
        outputs.append(f"# {module}\n{done.stdout}")
        if done.returncode != 0:
            failures.append(f"{module}: exit {done.returncode}")
    return outputs, failures


def write_summary(
    selected: list[tuple[str, float]], results_dir: Path, outputs: list[str], failures: list[str], started: float
) -> None:
    """Every target with pass/miss on stdout, and ``summary.md`` and ``summary.json`` beside the results."""
    targets: list[Target] = []
    for module, _ in selected:
        path = results_dir / f"{module.split('.')[-1]}.json"
        if path.exists():
            targets += _targets(json.loads(path.read_text()))
    summary = targets_table(targets) if targets else "(no results)"
    print("\n# All targets\n")
    print(summary)
    info = machine()
    header = (
        f"Machine: {info['nproc']} CPUs, {info['cpu_model']}, Python {info['python']} "
        f"({info['implementation']}), Linux {info['kernel']}; run {info['date_utc']}, "
        f"{time.monotonic() - started:.0f} s in all."
    )
    results_dir.mkdir(parents=True, exist_ok=True)
    (results_dir / "summary.md").write_text("\n\n".join([header, *outputs, "# All targets\n\n" + summary]) + "\n")
    (results_dir / "summary.json").write_text(
        json.dumps(
            {
                "machine": info,
                "duration_s": time.monotonic() - started,
                "failures": failures,
                "targets": [t.as_dict() for t in targets],
            },
            indent=2,
        )
        + "\n"
    )
    print(f"\n{header}")
    for failure in failures:
        print(f"FAILED: {failure}")


if __name__ == "__main__":
    raise SystemExit(main())
