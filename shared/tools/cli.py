"""The ``gpuq`` command: ``dev``, ``demo``, ``submit``, ``status``, ``cancel``, ``fake-ollama``, ``simulate``."""

from __future__ import annotations

import argparse
import signal
import sys
import time
from pathlib import Path
from types import FrameType
from typing import Any

from shared.errors import ApiError
from shared.settings import ClientSettings, split_csv
from shared.tools.client import JobsClient

__all__ = ["build_parser", "main"]

KEY_FILE = "dev-api-key"


def _api_key(settings: ClientSettings) -> str:
    if settings.api_key:
        return settings.api_key
    keys = split_csv(settings.api_keys)
    if keys:
        return keys[0].partition(":")[2] or keys[0]
    path = settings.data_dir / KEY_FILE
    if path.exists():
        return path.read_text().strip()
    raise SystemExit("no API key: set GPUQ_API_KEY (or run `gpuq dev`, which writes one to .gpuq/dev-api-key)")


def _client() -> JobsClient:
    settings = ClientSettings()
    return JobsClient(settings.url, _api_key(settings))


class _Stop(Exception):
    pass


def _raise_stop(signum: int, frame: FrameType | None) -> None:
    raise _Stop


def _cmd_dev(args: argparse.Namespace) -> int:
    from shared.tools.devstack import DevStack, DevStackConfig

    client = ClientSettings()
    config = DevStackConfig(
        port=args.port,
        data_dir=Path(args.data_dir),
        provider=args.provider,
        vast_port=args.vast_port,
        ollama_url=args.ollama_url or client.ollama_url or None,
        idle_grace_s=args.idle_grace,
        api_key=client.api_keys or None,
        vast_api_key=client.vastai_api_key or None,
    )
    signal.signal(signal.SIGTERM, _raise_stop)
    signal.signal(signal.SIGINT, _raise_stop)  # also when started in the background (SIGINT ignored)
    stack = DevStack(config)
    print(f"gpuq dev: starting (logs in {stack.log_dir})", flush=True)
    try:
        with stack:
            (stack.data_dir / KEY_FILE).write_text(stack.api_key)
            print(f"gpuq dev: jobs API at {stack.url}/v1/jobs", flush=True)
            print(f"gpuq dev: API key {stack.api_key}  (also in {stack.data_dir / KEY_FILE})", flush=True)
            print(
                f"gpuq dev: model server {stack.ollama_url}; provider {config.provider}; "
                f"idle grace {config.idle_grace_s:g}s. Ctrl-C stops everything.",
                flush=True,
            )
            if stack.vast_url:
                print(
                    f"gpuq dev: fake Vast API at {stack.vast_url}; try: VAST_URL={stack.vast_url} "
                    f"VAST_API_KEY={stack.vast_api_key} vastai show instances --raw",
                    flush=True,
                )
            while True:
                time.sleep(3600)
    except (KeyboardInterrupt, _Stop):
        print("\ngpuq dev: stopped every process it started", flush=True)
    return 0


def _waiting_line(status: str, reason: str | None, started: float) -> str:
    return f"\r\033[K… {status}{' · ' + reason.replace('_', ' ') if reason else ''} · {time.monotonic() - started:.1f}s"


def _follow_stream(client: JobsClient, job_id: str, started: float) -> dict[str, Any]:
    """Print the output as it streams; while the job waits, one line (rewritten on a TTY) says why."""
    tty = sys.stderr.isatty()
    waiting = True
    final: dict[str, Any] = {}
    for event in client.stream(job_id):
        if event.event == "status" and waiting:
            if tty:
                line = _waiting_line(event.data["status"], event.data["status_reason"], started)
                print(line, end="", file=sys.stderr, flush=True)
            else:
                print(f"… {event.data['status']} ({event.data['status_reason']})", file=sys.stderr)
        elif event.event == "output":
            if waiting and tty:
                print("\r\033[K", end="", file=sys.stderr, flush=True)
            waiting = False
            print(event.data["text"], end="", flush=True)
        elif event.event == "done":
            final = event.data
            break
    print()
    return final


def _poll_until_done(client: JobsClient, job_id: str, started: float) -> dict[str, Any]:
    """Poll the job until it ends, then print its output."""
    tty = sys.stderr.isatty()
    while True:
        final = client.get(job_id)
        if final["status"] in ("succeeded", "failed", "cancelled", "expired"):
            break
        if tty:
            print(_waiting_line(final["status"], final["status_reason"], started), end="", file=sys.stderr, flush=True)
        time.sleep(0.25)
    if tty:
        print("\r\033[K", end="", file=sys.stderr)
    final = client.get(job_id)
    print(final.get("output") or "")
    return final


def _cmd_submit(args: argparse.Namespace) -> int:
    client = _client()
    body: dict[str, Any] = {"model": args.model, "prompt": args.prompt}
    if args.callback_url:
        body["callback_url"] = args.callback_url
    try:
        job = client.submit(body, idempotency_key=args.idempotency_key)
    except ApiError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    started = time.monotonic()
    print(f"job {job['id']} {job['status']}", file=sys.stderr)
    final = _follow_stream(client, job["id"], started) if args.stream else _poll_until_done(client, job["id"], started)
    reason = f" ({final['status_reason']})" if final.get("status_reason") else ""
    print(f"job {final['id']} {final['status']}{reason} in {time.monotonic() - started:.1f}s", file=sys.stderr)
    return 0 if final["status"] == "succeeded" else 1


def _cmd_status(args: argparse.Namespace) -> int:
    import json

    try:
        print(json.dumps(_client().get(args.job_id), indent=2))
    except ApiError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


def _cmd_cancel(args: argparse.Namespace) -> int:
    try:
        job = _client().cancel(args.job_id)
    except ApiError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"job {job['id']} {job['status']}")
    return 0


def _cmd_keys_new(args: argparse.Namespace) -> int:
    """Make an API key; print it once, and the hashed GPUQ_API_KEYS entry to configure."""
    import secrets

    from shared.security.keys import hash_key

    key = "gpuq_" + secrets.token_urlsafe(32)
    print(f"API key for {args.name} (shown once; give it to the client): {key}")
    print(f"Add to GPUQ_API_KEYS (comma-separated):                   {args.name}:sha256:{hash_key(key)}")
    return 0


def _cmd_cost(args: argparse.Namespace) -> int:
    try:
        report = _client().cost(args.since)
    except ApiError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(
        f"last {args.since}: ${report['billed_usd']:.4f} for {report['billed_gpu_hours']:.3f} GPU-hours, "
        f"{report['cold_starts']} cold start(s), idle {100 * report['idle_fraction']:.1f}% of billed time"
    )
    for name, row in sorted(report["per_instance"].items()):
        print(f"  instance {name:<20} ${row['usd']:.4f}  {row['hours']:.3f} h  {int(row['sessions'])} session(s)")
    for name, row in sorted(report["per_model"].items()):
        print(f"  model    {name:<20} ${row['usd']:.4f}  {int(row['jobs'])} job(s)")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="gpuq", description="Run LLM jobs on rented GPUs, paying only for work.")
    sub = parser.add_subparsers(dest="command", required=True)

    dev = sub.add_parser("dev", help="run the whole stack locally in the foreground")
    dev.add_argument("--port", type=int, default=8080)
    dev.add_argument(
        "--provider",
        choices=["local", "vast-fake", "ovh-fake"],
        default="local",
        help="local: boxes are local processes; vast-fake: a local fake of Vast's API rents them; "
        "ovh-fake: a fake ovhai CLI runs one as an OVH AI Deploy app",
    )
    dev.add_argument("--vast-port", type=int, default=8081, help="port of the fake Vast API (vast-fake)")
    dev.add_argument("--data-dir", default=".gpuq")
    dev.add_argument("--ollama-url", default=None, help="use a real Ollama instead of the stand-in")
    dev.add_argument("--idle-grace", type=float, default=30.0, help="seconds idle before the box stops itself")
    dev.set_defaults(func=_cmd_dev)

    demo = sub.add_parser("demo", help="the whole story in under a minute, on localhost")
    demo.add_argument("--jobs", type=int, default=3)
    demo.set_defaults(func=lambda a: __import__("shared.tools.demo", fromlist=["run_demo"]).run_demo(a))

    submit = sub.add_parser("submit", help="submit a prompt and wait for (or --stream) its output")
    submit.add_argument("prompt")
    submit.add_argument("--model", default="llama3.2:1b")
    submit.add_argument("--stream", action="store_true", help="print tokens as they arrive")
    submit.add_argument("--callback-url")
    submit.add_argument("--idempotency-key")
    submit.set_defaults(func=_cmd_submit)

    status = sub.add_parser("status", help="show a job")
    status.add_argument("job_id")
    status.set_defaults(func=_cmd_status)

    cancel = sub.add_parser("cancel", help="cancel a queued or running job")
    cancel.add_argument("job_id")
    cancel.set_defaults(func=_cmd_cancel)

    cost = sub.add_parser("cost", help="what the boxes cost, per instance and per model")
    cost.add_argument("--since", default="24h", help="window: 30m, 24h, 7d…")
    cost.set_defaults(func=_cmd_cost)

    keys = sub.add_parser("keys", help="API keys").add_subparsers(dest="keys_command", required=True)
    new_key = keys.add_parser("new", help="make a key and its hashed GPUQ_API_KEYS entry")
    new_key.add_argument("name", help="who the key is for (appears in logs and as the job owner)")
    new_key.set_defaults(func=_cmd_keys_new)

    for name, text in (
        ("fake-ollama", "run the Ollama stand-in alone"),
        ("fake-vast", "run the fake Vast API alone (its boxes are local agent processes)"),
        ("offers", "Vast offers: gpuq offers [--gpu H100 --max-dph 2.5 --min-vram 40]"),
        ("instances", "our Vast boxes: list, create, start, stop, destroy"),
        ("deploy", "deploy to Google Cloud: gpuq deploy --project P --region R --settings F [--dry-run]"),
    ):
        sub.add_parser(name, help=text, add_help=False)
    sub.add_parser("simulate", help="replay a request trace through the idle policies", add_help=False)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    delegates = {
        "fake-ollama": "shared.fakes.ollama",
        "fake-vast": "shared.fakes.vast",
        "deploy": "shared.tools.deploy",
        "simulate": "shared.sim.simulator",
        "offers": "shared.tools.vast_cli",
        "instances": "shared.tools.vast_cli",
    }
    if argv and argv[0] in delegates:
        import importlib

        module = importlib.import_module(delegates[argv[0]])
        rest = argv if delegates[argv[0]] == "shared.tools.vast_cli" else argv[1:]
        return int(module.main(rest) or 0)
    args = build_parser().parse_args(argv)
    return int(args.func(args))


if __name__ == "__main__":
    sys.exit(main())
