"""A stand-in "model server" process that does exactly what its command line says, for the supervisor's
tests: print lines (``\\n`` or ``\\r`` ended), say it is up by writing its pid to a file (what the tests'
probe reads), exit with a code, ignore SIGTERM, leave a child behind, behave differently on later starts.

``python -m tests.integration.scripted_server --starts FILE [--fail-starts N] [--line TEXT]...
[--up-file FILE] [--go-file FILE --late-line TEXT] [--exit CODE] [--stay] [--ignore-term]
[--child-pid-file FILE]``
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import time
from pathlib import Path


def _parse() -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    parser.add_argument("--starts", type=Path, required=True, help="one line appended per start")
    parser.add_argument("--fail-starts", type=int, default=0, help="the first N starts exit 3 at once")
    parser.add_argument("--line", action="append", default=[], help="printed in order ('\\r' ends a redraw)")
    parser.add_argument("--up-file", type=Path, help="written with this pid once the lines are out")
    parser.add_argument("--go-file", type=Path, help="once up, wait for this file, then print --late-line")
    parser.add_argument("--late-line", action="append", default=[])
    parser.add_argument("--exit", type=int, help="exit with this code after the lines")
    parser.add_argument("--stay", action="store_true", help="stay running after the lines")
    parser.add_argument("--ignore-term", action="store_true")
    parser.add_argument("--child-pid-file", type=Path, help="start a sleeping child, write its pid here")
    return parser.parse_args()


def _print_lines(lines: list[str]) -> None:
    for line in lines:
        sys.stdout.write(line if line.endswith("\r") else line + "\n")
        sys.stdout.flush()


def main() -> int:
    args = _parse()
    with args.starts.open("a") as out:
        out.write(f"{os.getpid()}\n")
    start = len(args.starts.read_text().splitlines())
    if start <= args.fail_starts:
        print(f"start {start}: crashing", flush=True)
        return 3
    if args.ignore_term:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
    if args.child_pid_file is not None:
        child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
        args.child_pid_file.write_text(str(child.pid))
    _print_lines(args.line)
    if args.up_file is not None:
        args.up_file.write_text(str(os.getpid()))
    if args.go_file is not None:
        while not args.go_file.exists():
            time.sleep(0.01)
        _print_lines(args.late_line)
    if args.exit is not None:
        return int(args.exit)
    while args.stay:
        time.sleep(3600)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
