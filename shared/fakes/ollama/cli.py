"""``python -m shared.fakes.ollama``: the stand-in in the foreground, configured from the command line."""

from __future__ import annotations

import argparse
import math
import sys

from pydantic import ValidationError

from shared.fakes.ollama.app import FakeOllamaServer, start_fake_ollama
from shared.fakes.ollama.config import DEFAULT_MODELS, FakeOllamaConfig
from shared.fakes.ollama.goformat import FOREVER_NS, parse_keep_alive
from shared.fakes.serving import serve_until_signalled

__all__ = ["main"]


def main(argv: list[str] | None = None) -> int:
    """Run the stand-in in the foreground until SIGINT or SIGTERM."""
    parser = argparse.ArgumentParser(
        prog="fake-ollama", description="Offline stand-in for an Ollama server (REST API only)."
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=11434, help="0 picks a free port (printed on start)")
    parser.add_argument("--token-delay-ms", type=float, default=5.0)
    parser.add_argument("--load-delay-ms", type=float, default=200.0)
    parser.add_argument("--pull-delay-ms", type=float, default=50.0)
    parser.add_argument("--models", default=",".join(DEFAULT_MODELS), help="comma-separated, already pulled")
    parser.add_argument("--default-num-tokens", type=int, default=24)
    parser.add_argument("--max-queue", type=int, default=512, help="OLLAMA_MAX_QUEUE")
    parser.add_argument("--num-parallel", type=int, default=0, help="OLLAMA_NUM_PARALLEL; 0 = no limit")
    parser.add_argument("--keep-alive", default="5m", help="default keep_alive (Go duration or seconds)")
    args = parser.parse_args(argv)

    try:
        keep_alive = parse_keep_alive(float(args.keep_alive) if _is_number(args.keep_alive) else args.keep_alive)
        config = FakeOllamaConfig(
            models=[m.strip() for m in args.models.split(",") if m.strip()],
            token_delay_s=args.token_delay_ms / 1000,
            load_delay_s=args.load_delay_ms / 1000,
            pull_delay_s=args.pull_delay_ms / 1000,
            default_num_tokens=args.default_num_tokens,
            max_queue=args.max_queue,
            num_parallel=args.num_parallel,
            default_keep_alive_s=-1.0 if keep_alive == FOREVER_NS else keep_alive / 1e9,
        )
    except (ValueError, ValidationError) as exc:
        print(f"fake-ollama: {exc}", file=sys.stderr)
        return 2

    return serve_until_signalled(
        lambda: start_fake_ollama(args.host, args.port, config),
        FakeOllamaServer.close,
        name="fake-ollama",
        where=f"{args.host}:{args.port}",
        banner=lambda server: f"fake ollama listening on {server.url} (models: {', '.join(config.models)})",
    )


def _is_number(text: str) -> bool:
    try:
        return math.isfinite(float(text))
    except ValueError:
        return False
