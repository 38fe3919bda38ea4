"""The test hooks under ``/__fake__/`` (not part of Vast): call counters, faults and tunable delays, the
internal view of instances, and a reset that destroys them all. ``GET`` of ``calls`` and ``faults`` is
open; the rest needs the account key."""

from __future__ import annotations

import asyncio
from typing import Any, Final

from aiohttp import web
from pydantic import ValidationError

from shared.fakes.vast.auth import account_only
from shared.fakes.vast.config import FakeVastConfig, FakeVastFaults
from shared.fakes.vast.state import STATE
from shared.fakes.vast.transitions import destroy
from shared.fakes.vast.wire import error_response, json_body, json_response

__all__ = [
    "CONTROL",
    "clear_faults",
    "destroy_all",
    "get_calls",
    "get_faults",
    "get_instances",
    "reset_calls",
    "set_faults",
]


CONTROL: Final = "/__fake__/"


async def get_calls(request: web.Request) -> web.Response:
    state = request.app[STATE]
    return json_response(
        {
            "calls": dict(state.calls),
            "statuses": {k: dict(v) for k, v in state.statuses.items()},
            "rate_limited": state.rate_limited,
        }
    )


async def reset_calls(request: web.Request) -> web.Response:
    if (denied := account_only(request)) is not None:
        return denied
    state = request.app[STATE]
    state.calls.clear()
    state.statuses.clear()
    state.last_call.clear()
    state.rate_limited = 0
    return json_response({"ok": True})


_TUNABLE = (
    "schedule_delay_s",
    "loading_delay_s",
    "restart_loading_delay_s",
    "stop_delay_s",
    "stop_grace_s",
    "rate_limits_s",
    "rate_limit_text_every",
    "bad_key_status",
)


def _faults_view(config: FakeVastConfig) -> dict[str, Any]:
    return {"faults": config.faults.model_dump(), **{name: getattr(config, name) for name in _TUNABLE}}


async def get_faults(request: web.Request) -> web.Response:
    return json_response(_faults_view(request.app[STATE].config))


async def set_faults(request: web.Request) -> web.Response:
    if (denied := account_only(request)) is not None:
        return denied
    body = await json_body(request)
    if isinstance(body, web.Response):
        return body
    config = request.app[STATE].config
    try:
        for name, value in body.items():
            if name in _TUNABLE:
                setattr(config, name, value)
            else:
                setattr(config.faults, name, value)
    except (ValidationError, ValueError, AttributeError) as exc:
        return error_response(400, "invalid_args", str(exc)[:500])
    return json_response(_faults_view(config))


async def clear_faults(request: web.Request) -> web.Response:
    if (denied := account_only(request)) is not None:
        return denied
    config = request.app[STATE].config
    config.faults = FakeVastFaults()
    return json_response(_faults_view(config))


async def get_instances(request: web.Request) -> web.Response:
    if (denied := account_only(request)) is not None:
        return denied
    state = request.app[STATE]
    return json_response(
        {
            "instances": [
                {
                    "id": inst.id,
                    "actual_status": inst.actual_status,
                    "intended_status": inst.intended_status,
                    "stuck": inst.stuck,
                    "pid": inst.proc.pid if inst.proc else None,
                    "ports": inst.ports,
                    "container_key": inst.container_key,
                    "label": inst.label,
                    "offer_id": inst.offer.id,
                    "machine_id": inst.offer.machine_id,
                    "starts": inst.starts,
                    "exit_code": inst.exit_code,
                    "env": inst.env,
                    "image": inst.image,
                    "onstart": inst.onstart,
                    "disk": inst.disk,
                }
                for inst in state.instances.values()
            ],
            "destroyed": sorted(state.destroyed),
        }
    )


async def destroy_all(request: web.Request) -> web.Response:
    """Reset between tests: destroy every instance (processes stopped) and clear faults and counters."""
    if (denied := account_only(request)) is not None:
        return denied
    state = request.app[STATE]
    for inst in list(state.instances.values()):
        destroy(state, inst)
    pending = [task for task in state.background if not task.done()]
    if pending:
        await asyncio.gather(*pending, return_exceptions=True)
    state.config.faults = FakeVastFaults()
    state.calls.clear()
    state.statuses.clear()
    state.last_call.clear()
    state.rate_limited = 0
    return json_response({"ok": True})
