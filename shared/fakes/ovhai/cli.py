"""``python -m shared.fakes.ovhai``: one ``ovhai`` call, parsed as the real CLI parses it, run on the
state file, printed as JSON (``-o json``) or as a short table."""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

from shared.fakes.ovhai.commands import CliError, execute
from shared.fakes.ovhai.statefile import locked_state

__all__ = ["main"]


def _parse(argv: list[str]) -> argparse.Namespace:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("-o", "--output", default="table")
    common.add_argument("--token", default=None)
    parser = argparse.ArgumentParser(prog="ovhai", parents=[common])
    groups = parser.add_subparsers(dest="group", required=True)
    app = groups.add_parser("app", parents=[common]).add_subparsers(dest="verb", required=True)
    run = app.add_parser("run", parents=[common])
    run.add_argument("--name", default=None)
    run.add_argument("--flavor", default=None)
    run.add_argument("--gpu", type=int, default=None)
    run.add_argument("--cpu", type=int, default=None)
    run.add_argument("--default-http-port", type=int, default=8080)
    run.add_argument("--unsecure-http", action="store_true")
    run.add_argument("--label", action="append", default=[])
    run.add_argument("--env", action="append", default=[])
    run.add_argument("--volume", action="append", default=[])
    run.add_argument("image")
    run.add_argument("command", nargs=argparse.REMAINDER)
    for verb in ("start", "stop", "get", "delete"):
        app.add_parser(verb, parents=[common]).add_argument("id")
    app.add_parser("list", parents=[common])
    return parser.parse_args(argv)


def _table(result: Any) -> str:
    rows = result if isinstance(result, list) else [result]
    lines = ["ID                                   NAME             STATE         URL"]
    for app in rows:
        lines.append(
            f"{app['id']:<36} {app['spec']['name']:<16} {app['status']['state']:<13} {app['status']['url'] or ''}"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    state_path = Path(os.environ.get("OVHAI_FAKE_STATE", Path.home() / ".ovhai-fake" / "state.json"))
    try:
        args = _parse(argv)
    except SystemExit as exc:  # argparse: usage errors exit 2, as clap does
        return int(exc.code or 0)
    now = time.time()
    with locked_state(state_path) as state:
        state["calls"].append({"argv": argv, "at": now})
        try:
            result = execute(args, state, now, state_path.parent)
        except CliError as exc:
            print(str(exc), file=sys.stderr)
            return 1
    print(json.dumps(result, indent=2) if args.output == "json" else _table(result))
    return 0
