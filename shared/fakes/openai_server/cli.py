"""``python -m shared.fakes.openai_server`` (``gpuq fake-openai``): the stand-in in the foreground."""

from __future__ import annotations

import argparse
import sys

from pydantic import ValidationError

from shared.fakes.ollama.config import DEFAULT_MODELS, FakeOllamaConfig
from shared.fakes.openai_server.app import FakeOpenAIServer, start_fake_openai
from shared.fakes.serving import serve_until_signalled

__all__ = ["main"]


def main(argv: list[str] | None = None) -> int:
    """Run the stand-in in the foreground until SIGINT or SIGTERM."""
    parser = argparse.ArgumentParser(
        prog="fake-openai", description="Offline stand-in for an OpenAI-compatible model server (vLLM, llama-server)."
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8001, help="0 picks a free port (printed on start)")
    parser.add_argument("--token-delay-ms", type=float, default=5.0)
    parser.add_argument("--load-delay-ms", type=float, default=200.0, help="503 'Loading model' until then")
    parser.add_argument("--models", default=",".join(DEFAULT_MODELS), help="comma-separated served model names")
    parser.add_argument("--default-num-tokens", type=int, default=24, help="tokens made without max_tokens")
    args = parser.parse_args(argv)
    try:
        config = FakeOllamaConfig(
            models=[m.strip() for m in args.models.split(",") if m.strip()],
            token_delay_s=args.token_delay_ms / 1000,
            load_delay_s=args.load_delay_ms / 1000,
            default_num_tokens=args.default_num_tokens,
        )
    except (ValueError, ValidationError) as exc:
        print(f"fake-openai: {exc}", file=sys.stderr)
        return 2
    if not config.models:
        print("fake-openai: serve at least one model (--models)", file=sys.stderr)
        return 2
    return serve_until_signalled(
        lambda: start_fake_openai(args.host, args.port, config),
        FakeOpenAIServer.close,
        name="fake-openai",
        where=f"{args.host}:{args.port}",
        banner=lambda server: (
            f"fake openai-compatible server listening on {server.url} (models: {', '.join(config.models)})"
        ),
    )
