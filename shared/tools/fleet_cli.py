"""``gpuq instances``: the fleet as the jobs API's box registry shows it (``GET /v1/instances``).

    gpuq instances [--pool P] [--state starting|ready|draining|stopped] [--json]

One line per box of every pool: state, jobs running / slots, $/h, cost of its open session, and why it was
started. Vast's own view of the account (``--vast``, ``--all``, ``create|start|stop|destroy``) stays in
:mod:`shared.tools.vast_cli`.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from typing import Any

from shared.errors import ApiError
from shared.tools.client import JobsClient
from shared.tools.terminal import print_table

__all__ = ["VAST_WORDS", "main", "wants_vast"]

VAST_WORDS = {"create", "start", "stop", "destroy", "--all", "--vast", "--data-dir"}
"""Arguments that make ``gpuq instances`` Vast's own command rather than the fleet's table."""


def wants_vast(argv: list[str]) -> bool:
    return any(arg in VAST_WORDS or arg.startswith("--data-dir=") for arg in argv)


def _age(since: float | None, now: float) -> str:
    if since is None:
        return "-"
    seconds = max(0.0, now - since)
    return (
        f"{seconds:.0f}s" if seconds < 120 else f"{seconds / 60:.0f}m" if seconds < 7200 else f"{seconds / 3600:.1f}h"
    )


def _row(box: dict[str, Any], now: float) -> list[str]:
    reason = box.get("start_reason") or {}
    return [
        box["id"],
        box["pool"],
        box["provider"],
        box["state"],
        f"{len(box['running_jobs'])}/{box.get('slots', '?')}",
        _age(box.get("started_at"), now),
        f"{box['price_per_hour']:.3f}",
        f"{box['cost_usd']:.4f}",
        str(reason.get("reason", "")) if box["state"] != "stopped" else "",
    ]


HEADER = ["box", "pool", "provider", "state", "jobs", "up", "$/h", "cost $", "started because"]


def main(argv: list[str], client: JobsClient) -> int:
    parser = argparse.ArgumentParser(prog="gpuq instances", description="The fleet: every box of every pool.")
    parser.add_argument("--pool", help="only this pool's boxes")
    parser.add_argument("--state", choices=["stopped", "starting", "ready", "draining"])
    parser.add_argument("--json", action="store_true", help="machine-readable output")
    args = parser.parse_args(argv)
    try:
        boxes = client.instances(pool=args.pool, state=args.state)["instances"]
    except ApiError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps(boxes, indent=1))
    elif not boxes:
        print("no boxes")
    else:
        now = time.time()
        print_table(HEADER, [_row(b, now) for b in boxes])
    return 0
