"""``gpuq offers`` and ``gpuq instances``: Vast.ai by hand, through the same provider the control plane uses.

    gpuq offers [--gpu H100 --max-dph 2.5 --min-vram 40]     offers that match, cheapest first
    gpuq instances --vast [--all]                            our instances: state, $/h, uptime
    gpuq instances create --offer ID --image IMG [--env K=V ...] [--onstart CMD] [--disk GB] [--label L]
    gpuq instances stop|start ID                             ID: a Vast id, or the logical box (vast-1)
    gpuq instances destroy ID -y

Settings come from the environment (``VASTAI_API_KEY``, ``VAST_URL``, ``VASTAI_*``; see the README, Run on Vast.ai).
Exit status: 0 on success, 1 when Vast (or the provider) refused, 2 for a usage error.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from collections.abc import Coroutine, Sequence
from pathlib import Path
from typing import Any, TypeVar

from pydantic import ValidationError

from shared.assembly import build_store
from shared.boxes.providers.vast import VastProvider, build_vast_provider, instance_state
from shared.boxes.providers.vast.offers import VastOffer, offer_query
from shared.errors import GpuqError
from shared.models import Instance
from shared.settings import ControlPlaneSettings, VastSettings
from shared.tools.terminal import print_table

__all__ = ["build_parser", "main"]

T = TypeVar("T")


def build_parser() -> argparse.ArgumentParser:
    # Common options are accepted at every level; SUPPRESS keeps a sub-level default from hiding an earlier value.
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--data-dir",
        default=argparse.SUPPRESS,
        help="the control plane's data dir, whose store holds the logical box's state (default GPUQ_DATA_DIR, .gpuq)",
    )
    common.add_argument("--box", default=argparse.SUPPRESS, help="the logical box id (default vast-1)")
    parser = argparse.ArgumentParser(prog="gpuq", description="Vast.ai offers and instances.", parents=[common])
    sub = parser.add_subparsers(dest="group", required=True)

    offers = sub.add_parser("offers", help="list rentable offers, cheapest first", parents=[common])
    offers.add_argument(
        "--gpu",
        action="append",
        default=[],
        metavar="NAME",
        help="GPU name, repeatable or comma-separated (default VASTAI_PREFERRED_GPUS)",
    )
    offers.add_argument("--max-dph", type=float, default=None, help="most $/h (default VASTAI_MAX_BID_PER_HOUR)")
    offers.add_argument("--min-vram", type=float, default=None, help="min VRAM per GPU in GB")
    offers.add_argument("--min-reliability", type=float, default=None, help="0..1 (default VASTAI_MIN_RELIABILITY)")
    offers.add_argument("--disk", type=float, default=None, help="GB of disk to price in")
    offers.add_argument("--limit", type=int, default=20)
    offers.add_argument("--json", action="store_true", help="machine-readable output")

    instances = sub.add_parser("instances", help="our instances; create/stop/start/destroy one", parents=[common])
    instances.add_argument("--all", action="store_true", help="every instance of the account, not only ours")
    instances.add_argument("--vast", action="store_true", help="Vast's own list (plain `gpuq instances` is the fleet)")
    instances.add_argument("--json", action="store_true", help="machine-readable output")
    actions = instances.add_subparsers(dest="action")
    create = actions.add_parser("create", help="rent an offer", parents=[common])
    create.add_argument("--offer", type=int, required=True, help="offer id from `gpuq offers`")
    create.add_argument("--image", default=None, help="docker image (default VASTAI_DEFAULT_IMAGE)")
    create.add_argument(
        "--env",
        action="append",
        default=[],
        metavar="K=V",
        help="env var, repeatable; '-p 8000:8000' style entries open ports",
    )
    create.add_argument("--onstart", default=None, help="on-start command")
    create.add_argument("--disk", type=float, default=None, help="disk in GB (default VASTAI_DEFAULT_DISK_GB)")
    create.add_argument("--label", default=None, help="label (default VASTAI_LABEL, which marks it as ours)")
    for name, text in (
        ("stop", "stop an instance (confirmed)"),
        ("start", "start a stopped instance"),
        ("destroy", "destroy an instance (ends all billing)"),
    ):
        action = actions.add_parser(name, help=text, parents=[common])
        action.add_argument("id", help="Vast instance id, or the logical box id")
        if name == "destroy":
            action.add_argument("-y", "--yes", action="store_true", help="do not ask")
    return parser


def _run(coro: Coroutine[Any, Any, T]) -> T:
    return asyncio.run(coro)


def _split(values: Sequence[str]) -> list[str]:
    return [part.strip() for value in values for part in value.split(",") if part.strip()]


def _env(pairs: Sequence[str]) -> dict[str, str]:
    env: dict[str, str] = {}
    for pair in pairs:
        if pair.startswith("-p "):
            env[pair] = "1"
            continue
        name, sep, value = pair.partition("=")
        if not sep or not name:
            raise ValueError(f"--env wants K=V, got {pair!r}")
        env[name] = value
    return env


def _uptime(instance: Instance, now: float) -> str:
    if instance.state.value != "running" or instance.started_at is None:
        return "-"
    seconds = max(0, int(now - instance.started_at))
    if seconds >= 3600:
        return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"
    return f"{seconds // 60}m{seconds % 60:02d}s"


def _cmd_offers(provider: VastProvider, args: argparse.Namespace) -> int:
    settings = provider.settings
    overrides: dict[str, Any] = {"limit": max(args.limit * 4, 64)}
    if args.gpu:
        overrides["gpu_names"] = tuple(_split(args.gpu))
    if args.max_dph is not None:
        overrides["max_dph"] = args.max_dph
    if args.min_vram is not None:
        overrides["min_vram_gb"] = args.min_vram
    if args.min_reliability is not None:
        overrides["min_reliability"] = args.min_reliability
    if args.disk is not None:
        overrides["disk_gb"] = args.disk
    offers: list[VastOffer] = _run(provider.search_offers(offer_query(settings, **overrides)))[: args.limit]
    if args.json:
        print(json.dumps([o.model_dump(exclude={"raw"}) for o in offers], indent=1))
        return 0
    if not offers:
        print("no offer matches")
        return 0
    print_table(
        ["ID", "GPU", "VRAM", "$/H", "RELIABILITY", "LOCATION"],
        [
            [
                str(o.id),
                f"{o.num_gpus}x {o.gpu_name}",
                f"{o.gpu_ram_gb:.0f} GB",
                f"${o.dph_total:.3f}",
                f"{o.reliability * 100:.1f}%",
                o.geolocation or "-",
            ]
            for o in offers
        ],
    )
    return 0


async def _all_instances(provider: VastProvider) -> list[tuple[Instance, dict[str, Any]]]:
    rows = await provider.client.list_instances({})
    current = provider.current_vast_id()
    out = []
    for row in rows:
        vid = int(row["id"])
        started = time.time() - float(row["uptime_mins"]) * 60 if row.get("uptime_mins") else None
        out.append(
            (
                Instance(
                    id=provider.logical_id if vid == current else str(vid),
                    provider="vast",
                    state=instance_state(row),
                    label=row.get("label"),
                    price_per_hour=float(row.get("dph_total") or 0.0),
                    started_at=started,
                ),
                row,
            )
        )
    return out


def _cmd_list(provider: VastProvider, args: argparse.Namespace) -> int:
    current = provider.current_vast_id()
    if args.all:
        listed = _run(_all_instances(provider))
        instances = [instance for instance, _ in listed]
    else:
        instances = _run(provider.list())
    if args.json:
        print(json.dumps([i.model_dump(mode="json") for i in instances], indent=1))
        return 0
    if not instances:
        print("no instances")
        return 0
    now = time.time()
    rows = []
    for i in instances:
        vast_id = str(current) if i.id == provider.logical_id else i.id
        rows.append(
            [
                vast_id,
                i.id if i.id == provider.logical_id else "-",
                i.state.value,
                f"${i.price_per_hour:.3f}",
                _uptime(i, now),
                i.label or "-",
                i.agent_url or "-",
            ]
        )
    print_table(["ID", "BOX", "STATE", "$/H", "UPTIME", "LABEL", "AGENT"], rows)
    return 0


def _cmd_action(provider: VastProvider, args: argparse.Namespace) -> int:
    if args.action == "create":
        new_id = _run(
            provider.create_instance(
                args.offer,
                image=args.image,
                env=_env(args.env),
                onstart=args.onstart,
                disk_gb=args.disk,
                label=args.label,
            )
        )
        print(f"created instance {new_id} from offer {args.offer}")
        return 0
    if args.action == "destroy" and not args.yes:
        if not sys.stdin.isatty():
            print("refusing to destroy without --yes", file=sys.stderr)
            return 2
        if input(f"destroy instance {args.id}? All its data is lost. [y/N] ").strip().lower() != "y":
            print("aborted")
            return 1
    method = {"stop": provider.stop, "start": provider.start, "destroy": provider.destroy}[args.action]
    instance = _run(method(args.id))
    print(f"instance {args.id}: {instance.state.value}" + (f" ({instance.detail})" if instance.detail else ""))
    return 0


def main(argv: list[str] | None = None) -> int:
    """``gpuq offers ...`` / ``gpuq instances ...`` (``argv`` starts with ``offers`` or ``instances``)."""
    args = build_parser().parse_args(sys.argv[1:] if argv is None else argv)
    try:
        settings = VastSettings()
        # The box's state is in the control plane's store (GPUQ_STORE …): the CLI sees what dispatch rented.
        cp_settings = ControlPlaneSettings()
        if hasattr(args, "data_dir"):
            cp_settings = cp_settings.model_copy(update={"data_dir": Path(args.data_dir)})
        state_dir = settings.state_dir or cp_settings.data_dir / "vast"
        provider = build_vast_provider(
            settings, logical_id=getattr(args, "box", "vast-1"), state_dir=state_dir, store=build_store(cp_settings)
        )
        if args.group == "offers":
            return _cmd_offers(provider, args)
        if args.action is None:
            return _cmd_list(provider, args)
        return _cmd_action(provider, args)
    except ValidationError as exc:
        print(f"error: bad Vast settings: {exc.errors()[0].get('msg')}", file=sys.stderr)
        return 2
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except GpuqError as exc:
        print(f"error: {exc.code}: {exc.message}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
