"""The ``gpuq`` command: ``dev``, ``demo``, ``submit``, ``status``, ``logs``, ``cancel``, ``cost``, ``keys``,
``instances``, and the dev tools it delegates to (``fake-ollama``, ``fake-openai``, ``fake-vast``, ``offers``,
``deploy``, ``simulate``). API refusals become ``error: …`` on stderr and exit status 2, in :func:`main` only."""

from __future__ import annotations

import argparse
import json
import signal
import sys
import time
from pathlib import Path
from types import FrameType
from typing import Any

from shared.errors import ApiError
from shared.settings import ClientSettings, split_csv
from shared.tools import fleet_cli
from shared.tools.client import JobsClient
from shared.tools.history import job_history
from shared.tools.terminal import WaitingLine, print_table

__all__ = ["build_parser", "main"]

KEY_FILE = "dev-api-key"
WEBHOOK_SECRET_FILE = "dev-webhook-secret"


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


_OPEN: list[JobsClient] = []  # closed when the command ends (main)


def _client() -> JobsClient:
    settings = ClientSettings()
    client = JobsClient(settings.url, _api_key(settings))
    _OPEN.append(client)
    return client


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
        max_boxes=args.max_boxes,
        pull_on_demand=args.pull_on_demand,
        backend=args.backend,
        pools_file=Path(args.pools) if args.pools else None,
        api_key=client.api_keys or None,
        vast_api_key=client.vastai_api_key or None,
    )
    if config.backend == "openai" and (config.provider != "local" or config.pull_on_demand):
        raise SystemExit("gpuq dev: --backend openai runs local boxes (--provider local), without --pull-on-demand")
    signal.signal(signal.SIGTERM, _raise_stop)
    signal.signal(signal.SIGINT, _raise_stop)  # also when started in the background (SIGINT ignored)
    stack = DevStack(config)
    print(f"gpuq dev: starting (logs in {stack.log_dir})", flush=True)
    try:
        with stack:
            (stack.data_dir / KEY_FILE).write_text(stack.api_key)
            secret = stack.settings.webhook_secret
            (stack.data_dir / WEBHOOK_SECRET_FILE).write_text(secret)
            print(f"gpuq dev: jobs API at {stack.url}/v1/jobs", flush=True)
            print(f"gpuq dev: API key {stack.api_key}  (also in {stack.data_dir / KEY_FILE})", flush=True)
            print(
                f"gpuq dev: callbacks signed with {secret}  (also in {stack.data_dir / WEBHOOK_SECRET_FILE})",
                flush=True,
            )
            if stack.from_env:
                names = ", ".join(f"GPUQ_{n.upper()}" for n in stack.from_env)
                print(f"gpuq dev: from your environment (beating the dev defaults): {names}", flush=True)
            if stack.ignored_env:
                names = ", ".join(f"GPUQ_{n.upper()}" for n in stack.ignored_env)
                print(f"gpuq dev: ignored (the dev stack wires these itself): {names}", flush=True)
            server = stack.openai_url + " (OpenAI-compatible)" if config.backend == "openai" else stack.ollama_url
            print(
                f"gpuq dev: model server {server}; provider {config.provider}; "
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


def _follow_stream(client: JobsClient, job_id: str) -> dict[str, Any]:
    """Print the output as it streams; while the job waits, one live line says why."""
    waiting: WaitingLine | None = WaitingLine()
    final: dict[str, Any] = {}
    for event in client.stream(job_id):
        if event.event == "status" and waiting is not None:
            waiting.update(event.data["status"], event.data["status_reason"], event.data.get("instance_id"))
        elif event.event == "output":
            if waiting is not None:
                waiting.done()
                waiting = None
            print(event.data["text"], end="", flush=True)
        elif event.event == "done":
            final = event.data
            break
    if waiting is not None:
        waiting.done()
    print()
    return final


def _poll_until_done(client: JobsClient, job_id: str) -> dict[str, Any]:
    """Poll the job until it ends (one live line says why it waits), then print its output."""
    waiting = WaitingLine()
    while True:
        final = client.get(job_id)
        if final["status"] in ("succeeded", "failed", "cancelled", "expired"):
            break
        waiting.update(final["status"], final["status_reason"], final.get("instance_id"))
        time.sleep(0.25)
    waiting.done()
    print(final.get("output") or "")
    return final


def _option(text: str) -> tuple[str, Any]:
    """``k=v`` of ``--option``: the value as JSON when it parses (numbers, true, lists), else as text."""
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"--option wants key=value, got {text!r}")
    try:
        return key, json.loads(value)
    except ValueError:
        return key, value


def _job_body(args: argparse.Namespace) -> dict[str, Any]:
    body: dict[str, Any] = {"model": args.model}
    if args.messages_file:
        body["messages"] = json.loads(Path(args.messages_file).read_text())
    if args.prompt is not None:
        body["prompt"] = args.prompt
    if args.option:
        body["options"] = dict(args.option)
    if args.callback_url:
        body["callback_url"] = args.callback_url
    return body


def _cmd_submit(args: argparse.Namespace) -> int:
    if (args.prompt is None) == (args.messages_file is None):
        raise SystemExit("gpuq submit: give a prompt or --messages-file (one of them)")
    client = _client()
    job = client.submit(_job_body(args), idempotency_key=args.idempotency_key)
    started = time.monotonic()
    print(f"job {job['id']} {job['status']}", file=sys.stderr)
    final = _follow_stream(client, job["id"]) if args.stream else _poll_until_done(client, job["id"])
    reason = f" ({final['status_reason']})" if final.get("status_reason") else ""
    print(f"job {final['id']} {final['status']}{reason} in {time.monotonic() - started:.1f}s", file=sys.stderr)
    return 0 if final["status"] == "succeeded" else 1


def _cmd_status(args: argparse.Namespace) -> int:
    print(json.dumps(_client().get(args.job_id), indent=2))
    return 0


def _cmd_logs(args: argparse.Namespace) -> int:
    """A job's history, oldest first: queued, started, each callback delivery, finished."""
    job = _client().get(args.job_id)
    if args.json:
        print(json.dumps(job_history(job), indent=1))
        return 0
    rows = [[e["at"] or "-", e["event"], e["detail"]] for e in job_history(job)]
    print_table(["at", "event", "detail"], rows, title=f"job {job['id']} ({job['model']})")
    return 0


def _cmd_cancel(args: argparse.Namespace) -> int:
    job = _client().cancel(args.job_id)
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
    report = _client().cost(args.since)
    if args.json:
        print(json.dumps(report, indent=1))
        return 0
    print(
        f"last {args.since}: ${report['billed_usd']:.4f} for {report['billed_gpu_hours']:.3f} GPU-hours, "
        f"{report['cold_starts']} cold start(s), idle {100 * report['idle_fraction']:.1f}% of billed time"
    )
    rows = [
        ["instance", name, f"{row['usd']:.4f}", f"{row['hours']:.3f} h", f"{int(row['sessions'])} session(s)"]
        for name, row in sorted(report["per_instance"].items())
    ] + [
        ["model", name, f"{row['usd']:.4f}", "", f"{int(row['jobs'])} job(s)"]
        for name, row in sorted(report["per_model"].items())
    ]
    if rows:
        print_table(["", "name", "$", "time", "count"], rows)
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="gpuq", description="Run LLM jobs on rented GPUs, paying only for work.")
    sub = parser.add_subparsers(dest="command", required=True)

    _add_dev(sub)
    _add_jobs(sub)
    return _add_delegates(sub, parser)


def _add_dev(sub: Any) -> None:
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
    dev.add_argument("--max-boxes", type=int, default=2, help="boxes the local pool may run at once")
    dev.add_argument("--pools", default=None, help="a pools file (TOML) instead of the one local pool")
    dev.add_argument(
        "--pull-on-demand", action="store_true", help="serve any model: the box pulls what its model server lacks"
    )
    dev.add_argument(
        "--backend",
        choices=["ollama", "openai"],
        default="ollama",
        help="the boxes' model server: the Ollama stand-in, or the OpenAI-compatible one (vLLM-like)",
    )
    dev.set_defaults(func=_cmd_dev)


def _add_jobs(sub: Any) -> None:
    demo = sub.add_parser("demo", help="the whole story in under a minute, on localhost")
    demo.add_argument("--jobs", type=int, default=3)
    demo.set_defaults(func=lambda a: __import__("shared.tools.demo", fromlist=["run_demo"]).run_demo(a))

    submit = sub.add_parser("submit", help="submit a prompt and wait for (or --stream) its output")
    submit.add_argument("prompt", nargs="?", help="the prompt (or --messages-file)")
    submit.add_argument("--messages-file", help="a JSON file with the chat messages ([{role, content}, …])")
    submit.add_argument("--option", action="append", type=_option, metavar="K=V", help="a model option, repeatable")
    submit.add_argument("--model", default="llama3.2:1b")
    submit.add_argument("--stream", action="store_true", help="print tokens as they arrive")
    submit.add_argument("--callback-url")
    submit.add_argument("--idempotency-key")
    submit.set_defaults(func=_cmd_submit)

    status = sub.add_parser("status", help="show a job (JSON)")
    status.add_argument("job_id")
    status.add_argument("--json", action="store_true", help="(the default: the job as the API gives it)")
    status.set_defaults(func=_cmd_status)

    logs = sub.add_parser("logs", help="a job's history: queued, started, callbacks, finished")
    logs.add_argument("job_id")
    logs.add_argument("--json", action="store_true", help="machine-readable output")
    logs.set_defaults(func=_cmd_logs)

    cancel = sub.add_parser("cancel", help="cancel a queued or running job")
    cancel.add_argument("job_id")
    cancel.set_defaults(func=_cmd_cancel)

    cost = sub.add_parser("cost", help="what the boxes cost, per instance and per model")
    cost.add_argument("--since", default="24h", help="window: 30m, 24h, 7d…")
    cost.add_argument("--json", action="store_true", help="machine-readable output")
    cost.set_defaults(func=_cmd_cost)

    keys = sub.add_parser("keys", help="API keys").add_subparsers(dest="keys_command", required=True)
    new_key = keys.add_parser("new", help="make a key and its hashed GPUQ_API_KEYS entry")
    new_key.add_argument("name", help="who the key is for (appears in logs and as the job owner)")
    new_key.set_defaults(func=_cmd_keys_new)


def _add_delegates(sub: Any, parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """Commands another module parses (their ``--help`` is theirs)."""
    for name, text in (
        ("fake-ollama", "run the Ollama stand-in alone"),
        ("fake-openai", "run the OpenAI-compatible model server stand-in alone (vLLM / llama-server flavour)"),
        ("fake-vast", "run the fake Vast API alone (its boxes are local agent processes)"),
        ("offers", "Vast offers: gpuq offers [--gpu H100 --max-dph 2.5 --min-vram 40]"),
        (
            "instances",
            "the fleet's boxes (--pool, --state, --json); --vast: Vast's own list, create/start/stop/destroy",
        ),
        ("deploy", "deploy to Google Cloud: gpuq deploy --project P --region R --settings F [--dry-run]"),
    ):
        sub.add_parser(name, help=text, add_help=False)
    sub.add_parser("simulate", help="replay a request trace through the idle policies", add_help=False)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    delegates = {
        "fake-ollama": "shared.fakes.ollama",
        "fake-openai": "shared.fakes.openai_server",
        "fake-vast": "shared.fakes.vast",
        "deploy": "shared.tools.deploy",
        "simulate": "shared.sim.simulator",
        "offers": "shared.tools.vast_cli",
        "instances": "shared.tools.vast_cli",
    }
    if argv and argv[0] == "instances" and not fleet_cli.wants_vast(argv[1:]):
        try:
            return fleet_cli.main(argv[1:], _client())
        finally:
            while _OPEN:
                _OPEN.pop().close()
    if argv and argv[0] in delegates:
        import importlib

        module = importlib.import_module(delegates[argv[0]])
        rest = argv if delegates[argv[0]] == "shared.tools.vast_cli" else argv[1:]
        return int(module.main(rest) or 0)
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args))
    except ApiError as exc:  # the one place an API refusal becomes a message and an exit status
        print(f"error: {exc}", file=sys.stderr)
        return 2
    finally:
        while _OPEN:
            _OPEN.pop().close()


if __name__ == "__main__":
    sys.exit(main())
