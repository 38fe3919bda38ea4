"""Vast's API endpoints: instances (show, list, manage, destroy), offers (``bundles``), create
(``asks``), and the small ones the CLI calls (GPU names, current user, filters, the retired list)."""

from __future__ import annotations

import json
import secrets
import time
from collections import Counter
from collections.abc import Callable
from typing import Any

from aiohttp import web

from shared.fakes.vast.auth import auth
from shared.fakes.vast.instances import FakeInstance
from shared.fakes.vast.query import matches, page_offset, page_token, sort_rows
from shared.fakes.vast.state import STATE
from shared.fakes.vast.transitions import boot, destroy, request_start, request_stop, transition
from shared.fakes.vast.wire import error_response, json_body, json_response

__all__ = [
    "ENDPOINT_OF",
    "bundles",
    "create_instance",
    "current_user",
    "destroy_instance",
    "gpu_names",
    "instance_filters",
    "list_v0",
    "list_v1",
    "manage_instance",
    "show_instance",
]


def _instance_id(request: web.Request) -> int | None:
    raw = request.match_info.get("id", "")
    return int(raw) if raw.isdigit() else None


async def gpu_names(request: web.Request) -> web.Response:
    names = sorted({o.gpu_name for o in request.app[STATE].config.offers} | {"RTX 3080", "RTX A6000", "L40S"})
    return json_response({"gpu_names": names})


async def current_user(request: web.Request) -> web.Response:
    caller = auth(request)
    if isinstance(caller, web.Response):
        return caller
    return json_response(
        {
            "id": 4242,
            "username": "fake",
            "email": "fake@example.invalid",
            "fullname": "Fake Vast User",
            "balance": 100.0,
            "credit": 100.0,
            "has_billing": True,
            "host_agreement_accepted": False,
            "ssh_key": None,
            "sid": "fake",
            "can_pay": True,
        }
    )


async def show_instance(request: web.Request) -> web.Response:
    vid = _instance_id(request)
    caller = auth(request, instance_id=vid)
    if isinstance(caller, web.Response):
        return caller
    state = request.app[STATE]
    inst = state.instances.get(vid) if vid is not None else None
    return json_response({"instances": inst.row(state.config.public_ipaddr) if inst else None})


async def list_v0(request: web.Request) -> web.Response:
    caller = auth(request)
    if isinstance(caller, web.Response):
        return caller
    return error_response(410, "gone", "GET /api/v0/instances/ is retired: use GET /api/v1/instances/")


async def list_v1(request: web.Request) -> web.Response:
    caller = auth(request)
    if isinstance(caller, web.Response):
        return caller
    state = request.app[STATE]
    try:
        filters = json.loads(request.query.get("select_filters", "{}") or "{}")
        order_raw = json.loads(request.query.get("order_by", "[]") or "[]")
        limit = int(request.query.get("limit", "25"))
    except ValueError as exc:
        return error_response(400, "invalid_args", f"bad query parameter: {exc}")
    if not isinstance(filters, dict) or not isinstance(order_raw, list):
        return error_response(400, "invalid_args", "select_filters must be an object and order_by a list")
    limit = max(1, min(limit, 25))
    every = [inst.row(state.config.public_ipaddr) for inst in state.instances.values()]
    rows = [row for row in every if matches(row, filters)]
    order = [
        (str(o.get("col", "id")), str(o.get("dir", "asc")).lower() == "desc") for o in order_raw if isinstance(o, dict)
    ] or [("id", False)]
    rows = sort_rows(rows, order)
    start = page_offset(request.query.get("after_token", ""))
    page = rows[start : start + limit]
    more = start + limit < len(rows)
    labels = Counter(str(row.get("label") or "") for row in every)
    return json_response(
        {
            "success": True,
            "instances_found": len(page),
            "total_instances": len(every),
            "label_counts": dict(labels),
            "next_token": page_token(start + limit) if more else None,
            "instances": page,
        }
    )


async def instance_filters(request: web.Request) -> web.Response:
    caller = auth(request)
    if isinstance(caller, web.Response):
        return caller
    state = request.app[STATE]
    combos = {(i.actual_status, i.label, i.offer.gpu_name) for i in state.instances.values()}
    return json_response(
        {
            "filters": [
                {"actual_status": a, "label": lab, "gpu_name": g, "verification": "verified"}
                for a, lab, g in sorted(combos, key=str)
            ]
        }
    )


async def manage_instance(request: web.Request) -> web.Response:
    vid = _instance_id(request)
    caller = auth(request, instance_id=vid)
    if isinstance(caller, web.Response):
        return caller
    body = await json_body(request)
    if isinstance(body, web.Response):
        return body
    state = request.app[STATE]
    inst = state.instances.get(vid) if vid is not None else None
    if inst is None:
        return error_response(404, "no_such_instance", f"Instance {vid} not found")
    if "state" in body:
        wanted = body["state"]
        if wanted == "stopped":
            if state.config.faults.stop_fails > 0:
                state.config.faults.stop_fails -= 1
                return json_response({"success": False, "msg": "Unable to stop instance: machine did not respond"})
            request_stop(state, inst)
        elif wanted == "running":
            request_start(state, inst)
        else:
            return error_response(400, "invalid_args", f"unknown state {wanted!r}")
    if "label" in body:
        inst.label = None if body["label"] is None else str(body["label"])
    return json_response({"success": True})


async def destroy_instance(request: web.Request) -> web.Response:
    vid = _instance_id(request)
    caller = auth(request, instance_id=vid)
    if isinstance(caller, web.Response):
        return caller
    state = request.app[STATE]
    inst = state.instances.get(vid) if vid is not None else None
    if inst is None:
        return error_response(404, "no_such_instance", f"Instance {vid} not found")
    destroy(state, inst)
    return json_response({"success": True, "msg": "Instance destroyed successfully"})


_QUERY_CONTROL = {"order", "type", "limit", "allocated_storage", "disable_bundling", "select_cols"}


async def bundles(request: web.Request) -> web.Response:
    caller = auth(request)
    if isinstance(caller, web.Response):
        return caller
    if request.method == "GET":
        try:
            query = json.loads(request.query.get("q", "{}") or "{}")
        except ValueError:
            return error_response(400, "invalid_args", "q is not JSON")
    else:
        body = await json_body(request)
        if isinstance(body, web.Response):
            return body
        query = body.get("q", body) if isinstance(body.get("q"), dict) else body
    if not isinstance(query, dict):
        return error_response(400, "invalid_args", "query must be an object")
    state = request.app[STATE]
    try:
        storage = float(query.get("allocated_storage", 5.0) or 5.0)
        limit = int(query.get("limit", 64) or 64)
    except (TypeError, ValueError):
        return error_response(400, "invalid_args", "allocated_storage and limit must be numbers")
    filters = {k: v for k, v in query.items() if k not in _QUERY_CONTROL}
    rows = [o.row(storage) for o in state.config.offers if state.offer_available(o)]
    rows = [row for row in rows if matches(row, filters)]
    order = [
        (str(pair[0]), str(pair[1]).lower() == "desc")
        for pair in query.get("order") or []
        if isinstance(pair, list | tuple) and len(pair) == 2
    ] or [("score", True)]
    return json_response({"offers": sort_rows(rows, order)[: max(1, limit)]})


async def create_instance(request: web.Request) -> web.Response:
    caller = auth(request)
    if isinstance(caller, web.Response):
        return caller
    body = await json_body(request)
    if isinstance(body, web.Response):
        return body
    state = request.app[STATE]
    offer_id = request.match_info.get("offer_id", "")
    offer = next((o for o in state.config.offers if str(o.id) == offer_id), None)
    if offer is None or not state.offer_available(offer):
        return error_response(400, "no_such_ask", f"Instance type {offer_id} is no longer available")
    if not body.get("image") and not body.get("template_hash_id"):
        return error_response(400, "invalid_args", "image or template_hash_id is required")
    env = body.get("env") or {}
    if not isinstance(env, dict):
        return error_response(400, "invalid_args", "env must be an object")
    try:
        disk = float(body.get("disk") or 8.0)
    except (TypeError, ValueError):
        return error_response(400, "invalid_args", "disk must be a number")
    inst = FakeInstance(
        id=state.new_id(),
        offer=offer,
        image=body.get("image"),
        env={str(k): str(v) for k, v in env.items()},
        onstart=body.get("onstart"),
        label=body.get("label"),
        runtype=body.get("runtype") or "ssh",
        disk=disk,
        template_hash_id=body.get("template_hash_id"),
        args=body.get("args"),
        container_key=f"ck_{secrets.token_hex(16)}",
        created_at=time.time(),
    )
    state.instances[inst.id] = inst
    state.container_keys[inst.container_key] = inst.id
    if body.get("target_state") == "stopped":
        inst.intended_status, inst.actual_status, inst.cur_state, inst.status_msg = (
            "stopped",
            "stopped",
            "stopped",
            "created stopped",
        )
    else:
        transition(state, inst, lambda: boot(state, inst, state.config.loading_delay_s))
    if state.config.faults.create_lost_responses > 0:
        state.config.faults.create_lost_responses -= 1
        return web.Response(
            text="<html><body><h1>504 Gateway Time-out</h1></body></html>", status=504, content_type="text/html"
        )
    return json_response({"success": True, "new_contract": inst.id})


ENDPOINT_OF: dict[Callable[..., Any], str] = {
    gpu_names: "gpu_names",
    current_user: "user",
    show_instance: "show",
    list_v0: "list_v0",
    instance_filters: "filters",
    manage_instance: "manage",
    destroy_instance: "destroy",
    list_v1: "list",
    bundles: "bundles",
    create_instance: "create",
}
