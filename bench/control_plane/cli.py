"""The command line of ``python -m bench.control_plane``: every option, its default and its help."""

from __future__ import annotations

import argparse
from pathlib import Path

from bench import control_plane
from bench.report import RESULTS_DIR, int_list

__all__ = ["parse_args"]


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="bench.control_plane", description=(control_plane.__doc__ or "").split("\n")[0])
    p.add_argument("--store-jobs", type=int, default=2000, help="creates per thread count (store alone)")
    p.add_argument("--queue-pushes", type=int, default=500, help="TaskQueue.push calls (queue alone)")
    p.add_argument("--enqueue-requests", type=int, default=1000, help="jobs per concurrency level")
    p.add_argument("--concurrency", type=int_list, default=[1, 4, 16, 64])
    p.add_argument("--warm-jobs", type=int, default=40)
    p.add_argument("--seed", type=int, default=0, help="seed of the random pauses between submissions")
    p.add_argument("--cycles", type=int, default=5, help="cold starts per ready -> running variant")
    p.add_argument("--snooze-s", type=float, default=2.0, help="dispatch snooze while the box boots (GPUQ_SNOOZE_S)")
    p.add_argument("--token-delay-ms", type=float, default=5.0)
    p.add_argument(
        "--profile",
        type=Path,
        default=None,
        metavar="DIR",
        help="py-spy profiles of the functions worker and the emulator during the enqueue phase",
    )
    p.add_argument(
        "--functions-env",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="extra environment of the functions process, e.g. WORKERS=2 (to try a setting)",
    )
    p.add_argument("--max-s", type=float, default=300.0, help="skip remaining enqueue levels after this long")
    p.add_argument("--results-dir", type=Path, default=RESULTS_DIR)
    p.add_argument("--keep-logs", action="store_true")
    return p.parse_args(argv)
