"""``python -m shared.fakes.vast``: the fake in the foreground, configured from the command line."""

from __future__ import annotations

import argparse
import json
import os
import secrets
import sys
from pathlib import Path

from pydantic import ValidationError

from shared.fakes.serving import serve_until_signalled
from shared.fakes.vast.app import FakeVastServer, start_fake_vast
from shared.fakes.vast.config import ENDPOINTS, FakeVastConfig

__all__ = ["main"]


def main(argv: list[str] | None = None) -> int:
    """``python -m shared.fakes.vast --port 8081``: serve until SIGINT/SIGTERM, then stop every instance."""
    parser = argparse.ArgumentParser(
        prog="fake-vast",
        description="A fake Vast.ai API whose instances are local "
        "processes (the vastai CLI works against it with VAST_URL).",
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8081, help="0 picks a free port (printed on start)")
    parser.add_argument("--api-key", default=None, help="account key (default: $VASTAI_API_KEY, else generated)")
    parser.add_argument("--command", default=None, help="instance command as a JSON list (default: python -m agent)")
    parser.add_argument("--env", action="append", default=[], metavar="K=V", help="extra env for every instance")
    parser.add_argument("--log-dir", default=None, help="instance process logs go here")
    parser.add_argument("--schedule-delay", type=float, default=0.2, help="seconds: create/start → loading")
    parser.add_argument("--loading-delay", type=float, default=0.5, help="seconds: loading → running")
    parser.add_argument("--stop-delay", type=float, default=0.3, help="seconds: stop → process signalled")
    parser.add_argument(
        "--rate-limit",
        action="append",
        default=[],
        metavar="ENDPOINT=SECONDS",
        help=f"min interval per key; endpoints: {', '.join(ENDPOINTS)}",
    )
    args = parser.parse_args(argv)
    key = args.api_key or os.environ.get("VASTAI_API_KEY") or os.environ.get("VAST_API_KEY") or ""
    generated = not key
    key = key or f"fakevast_{secrets.token_hex(16)}"
    try:
        config = FakeVastConfig(
            api_key=key,
            schedule_delay_s=args.schedule_delay,
            loading_delay_s=args.loading_delay,
            stop_delay_s=args.stop_delay,
            extra_env=dict(item.split("=", 1) for item in args.env if "=" in item),
            log_dir=Path(args.log_dir) if args.log_dir else None,
            rate_limits_s={k: float(v) for k, v in (item.split("=", 1) for item in args.rate_limit)},
            **({"command": json.loads(args.command)} if args.command else {}),
        )
    except (ValueError, ValidationError) as exc:
        print(f"fake-vast: {exc}", file=sys.stderr)
        return 2

    return serve_until_signalled(
        lambda: start_fake_vast(args.host, args.port, config),
        FakeVastServer.close,
        name="fake-vast",
        where=f"{args.host}:{args.port}",
        farewell="fake vast stopped every instance",
        banner=lambda server: f"fake vast listening on {server.url}" + (f" (API key {key})" if generated else ""),
    )
