"""The local stacks the benchmark runs on (``DevStack`` with its settings from the command line), and their box."""

from __future__ import annotations

import argparse
from pathlib import Path

from bench.control_plane.constants import INSTANCE
from shared.models import InstanceState
from shared.tools.devstack import DevStack, DevStackConfig, free_port

__all__ = ["build_stack", "stop_box"]


def build_stack(
    work: Path, name: str, args: argparse.Namespace, port: int | None = None, extra_env: dict[str, str] | None = None
) -> DevStack:
    env = dict(item.split("=", 1) for item in args.functions_env) | (extra_env or {})
    config = DevStackConfig(
        port=port or free_port(),
        data_dir=work / name,
        token_delay_s=args.token_delay_ms / 1000,
        load_delay_s=0.2,
        idle_grace_s=600.0,
        reaper_period_s=3600.0,
        snooze_s=args.snooze_s,
        extra_env=env,
    )
    return DevStack(config)


def stop_box(stack: DevStack) -> None:
    """Stop the stack's one box (the local provider's agent process) unless it is stopped already."""
    if stack.provider().get_sync(INSTANCE).state is not InstanceState.STOPPED:
        stack.provider().stop_sync(INSTANCE)
