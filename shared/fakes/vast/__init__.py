"""A fake Vast.ai cloud: Vast's REST API on localhost, whose instances are real local processes.

Faithful enough that the official ``vastai`` 1.9.1 CLI works against it (``VAST_URL=http://127.0.0.1:PORT``
or ``--url``; the CLI reads its key from ``--api-key`` or ``VAST_API_KEY``), and so does gpuq's provider.

Reproduced (request and response shapes as the ``vastai`` 1.9.1 package sends and reads them)
    * ``GET /api/v0/instances/{id}/`` → ``{"instances": {...}}``, ``{"instances": null}`` once gone.
    * ``GET /api/v1/instances/?select_filters=<json>&order_by=<json>&limit=1..25[&after_token=…]`` →
      ``{"success", "instances_found", "total_instances", "label_counts", "next_token", "instances"}``;
      filters ``eq/neq/in/notin/gt/gte/lt/lte`` on any row field. ``GET /api/v0/instances/`` → 410
      (the retired list).
    * ``PUT /api/v0/instances/{id}/`` ``{"state": "running"|"stopped"}`` or ``{"label": …}`` →
      ``{"success": true}``; ``DELETE /api/v0/instances/{id}/`` → ``{"success": true, "msg": …}``.
    * ``POST /api/v0/bundles/`` (also ``GET ?q=<json>``) → ``{"offers": [...]}`` with Vast's query
      language, ``order``, ``limit``, ``allocated_storage`` (priced into ``dph_total``); the answer's
      ``Content-Type`` is exactly ``application/json`` (the CLI checks it). A rented offer is hidden.
    * ``PUT /api/v0/asks/{offer_id}/`` (the CLI's create body) → ``{"success": true, "new_contract": id}``.
    * ``GET /api/v0/gpu_names/unique/`` (no auth), ``GET /api/v0/users/current/``,
      ``GET /api/v0/instances/filters/``.
    * Rows carry every field the CLI reads (``start_date``, ``extra_env`` as ``[name, value]`` pairs,
      ``ports``, ``public_ipaddr``, ``dph_total``, ``actual_status``/``intended_status``/``cur_state``,
      ``status_msg``, ``uptime_mins``…).
    * Errors as ``{"success": false, "error": "...", "msg": "..."}``; a bad key → 401 (configurable
      403/404) ``auth_error`` / ``Invalid user key``. Rate limits: a minimum interval per endpoint and
      key (``rate_limits_s``); a 429 body is plain text ``API requests too frequent: endpoint
      threshold=…`` every ``rate_limit_text_every``-th time, JSON otherwise; no Retry-After.

Instances
    create → ``actual_status`` null ("scheduling") → ``loading`` after ``schedule_delay_s`` →
    ``running`` after ``loading_delay_s``; stop → ``intended_status: stopped`` at once, the process
    is signalled after ``stop_delay_s`` (SIGTERM to its process group, SIGKILL after
    ``stop_grace_s``) and then ``actual_status: stopped``. On every entry to ``running`` each port
    asked for with ``-p N:N`` in the env (and 22 for ssh launch modes) gets a fresh host port, so the
    agent's public port changes across restarts, as on Vast. The instance's command (``command``, or
    ``image_commands[image]``) runs with the instance's env plus ``GPUQ_AGENT_PORT=<mapped host port>``,
    ``GPUQ_AGENT_HOST=127.0.0.1``, ``CONTAINER_ID``, ``CONTAINER_API_KEY`` (a key that can only
    show/start/stop/destroy this instance), ``VAST_URL``, ``PUBLIC_IPADDR``, ``VAST_TCP_PORT_<n>``,
    ``GPUQ_AGENT_PROVIDER=vast`` and ``GPUQ_AGENT_INSTANCE_ID=<id>`` (unless the instance's env sets
    its own). A process that dies by itself leaves the instance ``exited``.

Not reproduced
    Billing, volumes, templates (``template_hash_id`` is stored, not expanded), bids/interruptible
    preemption, ssh, logs/execute, bulk endpoints, the ``/search/asks/`` endpoint, machine
    hosting, the real scheduler (a "stuck" start is a fault you arm), max-calls-per-period limits.

Test hooks (``/__fake__/*``; GET ``calls`` and ``faults`` are open, the rest needs the account key)
    ``GET /__fake__/calls`` (``DELETE`` resets): calls and statuses per endpoint name (``show``,
    ``list``, ``manage``, ``destroy``, ``bundles``, ``create``, ``gpu_names``, ``user``, ``filters``,
    ``list_v0``). ``GET/POST/DELETE /__fake__/faults``: arm :class:`FakeVastFaults` and change the
    delays and rate limits while running. ``GET /__fake__/instances``: internal view (pid, ports,
    container keys).

Run it with ``python -m shared.fakes.vast --port 8081`` (key from ``VASTAI_API_KEY``), in-process
with :func:`start_fake_vast`, or from synchronous tests with :func:`serve_in_thread`.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import itertools
import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
from collections import Counter, defaultdict
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final, Literal

from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from shared.fakes.serving import serve_in_thread as _serve_in_thread
from shared.fakes.serving import serve_until_signalled, start_site

__all__ = [
    "DEFAULT_OFFERS",
    "FakeOffer",
    "FakeVastConfig",
    "FakeVastControl",
    "FakeVastFaults",
    "FakeVastServer",
    "FakeVastState",
    "build_app",
    "main",
    "serve_in_thread",
    "start_fake_vast",
]

_JSON: Final = "application/json"
_CONTROL: Final = "/__fake__/"
ENDPOINTS: Final = ("gpu_names", "user", "show", "list", "list_v0", "filters", "manage", "destroy", "bundles", "create")


# --------------------------------------------------------------------------------------------
# Configuration
# --------------------------------------------------------------------------------------------


class FakeOffer(BaseModel):
    """A rentable machine slot. ``gpu_ram``/``cpu_ram`` in MB as Vast sends them; ``storage_cost`` in $/GB/month."""

    model_config = ConfigDict(extra="forbid")

    id: int
    machine_id: int
    host_id: int = 1000
    gpu_name: str
    num_gpus: int = 1
    gpu_ram: float = 24564.0
    dph_base: float = 0.3
    storage_cost: float = 0.1
    reliability: float = 0.99
    geolocation: str = "Sweden, SE"
    disk_space: float = 500.0
    verified: bool = True
    cuda_max_good: float = 12.4
    driver_version: str = "550.54.14"
    cpu_cores_effective: float = 16.0
    cpu_ram: float = 64000.0
    inet_up: float = 800.0
    inet_down: float = 900.0
    direct_port_count: int = 100
    dlperf: float = 80.0

    def dph_total(self, disk_gb: float) -> float:
        return round(self.dph_base + self.storage_cost * disk_gb / 730.0, 6)

    def row(self, allocated_storage: float) -> dict[str, Any]:
        dph = self.dph_total(allocated_storage)
        return {
            "id": self.id,
            "ask_contract_id": self.id,
            "bundle_id": self.id,
            "machine_id": self.machine_id,
            "host_id": self.host_id,
            "gpu_name": self.gpu_name,
            "num_gpus": self.num_gpus,
            "gpu_ram": self.gpu_ram,
            "gpu_total_ram": self.gpu_ram * self.num_gpus,
            "gpu_frac": 1.0,
            "gpu_arch": "nvidia",
            "gpu_display_active": False,
            "gpu_max_power": 450.0,
            "gpu_max_temp": 83.0,
            "gpu_mem_bw": 1000.0,
            "dph_base": self.dph_base,
            "dph_total": dph,
            "min_bid": round(self.dph_base * 0.6, 6),
            "storage_cost": self.storage_cost,
            "storage_total_cost": round(dph - self.dph_base, 6),
            "reliability": self.reliability,
            "reliability2": self.reliability,
            "geolocation": self.geolocation,
            "disk_space": self.disk_space,
            "disk_bw": 3000.0,
            "disk_name": "nvme",
            "verified": self.verified,
            "verification": "verified" if self.verified else "unverified",
            "rentable": True,
            "rented": False,
            "external": False,
            "cuda_max_good": self.cuda_max_good,
            "driver_version": self.driver_version,
            "cpu_cores": int(self.cpu_cores_effective * 2),
            "cpu_cores_effective": self.cpu_cores_effective,
            "cpu_ghz": 3.5,
            "cpu_name": "AMD EPYC 7543",
            "cpu_arch": "amd64",
            "cpu_ram": self.cpu_ram,
            "inet_up": self.inet_up,
            "inet_down": self.inet_down,
            "inet_up_cost": 0.0,
            "inet_down_cost": 0.0,
            "direct_port_count": self.direct_port_count,
            "dlperf": self.dlperf,
            "dlperf_per_dphtotal": round(self.dlperf / dph, 3) if dph else 0.0,
            "score": round(self.dlperf / 10, 3),
            "total_flops": self.dlperf,
            "flops_per_dphtotal": round(self.dlperf / dph, 3) if dph else 0.0,
            "compute_cap": 890,
            "pci_gen": 4.0,
            "pcie_bw": 25.0,
            "has_avx": 1,
            "static_ip": True,
            "duration": 30.0 * 86400,
            "end_date": time.time() + 30 * 86400,
            "hosting_type": 0,
            "ubuntu_version": "22.04",
            "vms_enabled": False,
            "is_bid": False,
            "cluster_id": None,
            "mobo_name": "fake",
            "bw_nvlink": 0.0,
            "datacenter": None,
        }


DEFAULT_OFFERS: Final[tuple[FakeOffer, ...]] = (
    FakeOffer(
        id=5100001,
        machine_id=41001,
        gpu_name="RTX 3090",
        gpu_ram=24576,
        dph_base=0.18,
        reliability=0.97,
        geolocation="Texas, US",
        dlperf=45.0,
    ),
    FakeOffer(
        id=5100002,
        machine_id=41002,
        gpu_name="RTX 4090",
        gpu_ram=24564,
        dph_base=0.34,
        reliability=0.995,
        geolocation="Sweden, SE",
        dlperf=80.0,
    ),
    FakeOffer(
        id=5100003,
        machine_id=41003,
        gpu_name="RTX 4090",
        gpu_ram=24564,
        dph_base=0.39,
        reliability=0.99,
        geolocation="Quebec, CA",
        dlperf=79.0,
    ),
    FakeOffer(
        id=5100004,
        machine_id=41004,
        gpu_name="A100 SXM4",
        gpu_ram=81920,
        dph_base=1.05,
        reliability=0.99,
        geolocation="Oregon, US",
        dlperf=160.0,
    ),
    FakeOffer(
        id=5100005,
        machine_id=41005,
        gpu_name="H100 SXM",
        gpu_ram=81559,
        dph_base=2.10,
        reliability=0.998,
        geolocation="Finland, FI",
        dlperf=300.0,
    ),
    FakeOffer(
        id=5100006,
        machine_id=41006,
        gpu_name="H100 SXM",
        gpu_ram=81559,
        dph_base=2.35,
        reliability=0.96,
        geolocation="Virginia, US",
        dlperf=295.0,
    ),
    FakeOffer(
        id=5100007,
        machine_id=41007,
        gpu_name="RTX 4090",
        gpu_ram=24564,
        dph_base=0.29,
        reliability=0.82,
        geolocation="Unknown",
        verified=False,
        dlperf=78.0,
    ),
)


class FakeVastFaults(BaseModel):
    """Faults to inject. Counters are consumed one per matching request; 0 = off."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)

    stuck_starts: int = Field(
        default=0, ge=0, description="next N starts of a stopped instance stay scheduling (GPU taken)"
    )
    error_burst: int = Field(default=0, ge=0, description="next N API calls answer error_status")
    error_status: int = Field(default=503, ge=500, le=599)
    error_endpoints: list[str] = Field(default_factory=list, description="endpoint names; empty = every endpoint")
    rate_limit_burst: int = Field(default=0, ge=0, description="next N API calls answer 429 (a 429 storm)")
    rate_limit_endpoints: list[str] = Field(default_factory=list)
    auth_error_status: Literal[401, 403, 404] | None = Field(
        default=None, description="every authenticated call fails as with a revoked key"
    )
    stop_fails: int = Field(default=0, ge=0, description="next N stop requests answer 200 {success: false}")
    create_lost_responses: int = Field(default=0, ge=0, description="next N creates run but answer 504 (lost answer)")


class FakeVastConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)

    api_key: str = "fake-vast-key"
    offers: list[FakeOffer] = Field(default_factory=lambda: list(DEFAULT_OFFERS))
    command: list[str] = Field(default_factory=lambda: [sys.executable, "-m", "agent"])
    image_commands: dict[str, list[str]] = Field(default_factory=dict, description="image → command override")
    extra_env: dict[str, str] = Field(default_factory=dict, description="added to every instance process")
    inherit_env: bool = True
    workdir: Path | None = None
    log_dir: Path | None = None
    schedule_delay_s: float = Field(default=0.2, ge=0)
    loading_delay_s: float = Field(default=0.5, ge=0)
    restart_loading_delay_s: float = Field(default=0.2, ge=0)
    stop_delay_s: float = Field(default=0.3, ge=0)
    stop_grace_s: float = Field(default=5.0, ge=0)
    rate_limits_s: dict[str, float] = Field(default_factory=dict, description="endpoint name → min interval per key")
    rate_limit_text_every: int = Field(default=2, ge=1)
    bad_key_status: Literal[401, 403, 404] = 401
    public_ipaddr: str = "127.0.0.1"
    first_instance_id: int = 7_000_001
    faults: FakeVastFaults = Field(default_factory=lambda: FakeVastFaults())


# --------------------------------------------------------------------------------------------
# State
# --------------------------------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _container_ports(env: Mapping[str, str], runtype: str | None) -> list[str]:
    """``-p 8000:8000`` / ``-p 8081:8081/udp`` env keys (the CLI's encoding of docker -p) → ``8000/tcp``."""
    ports: list[str] = []
    if runtype and ("ssh" in runtype or "jupyter" in runtype):
        ports.append("22/tcp")
    if runtype and "jupyter" in runtype:
        ports.append("8080/tcp")
    for key in env:
        if not key.startswith("-p "):
            continue
        spec = key[3:].strip()
        mapping, _, proto = spec.partition("/")
        container = mapping.rsplit(":", 1)[-1]
        if container.isdigit():
            name = f"{container}/{proto or 'tcp'}"
            if name not in ports:
                ports.append(name)
    return ports


@dataclass
class FakeInstance:
    id: int
    offer: FakeOffer
    image: str | None
    env: dict[str, str]
    onstart: str | None
    label: str | None
    runtype: str | None
    disk: float
    template_hash_id: str | None
    args: list[str] | None
    container_key: str
    created_at: float
    actual_status: str | None = None
    intended_status: str = "running"
    cur_state: str = "running"
    status_msg: str = "scheduling"
    ports: dict[str, list[dict[str, str]]] = field(default_factory=dict)
    proc: subprocess.Popen[bytes] | None = None
    stuck: bool = False
    running_since: float | None = None
    task: asyncio.Task[None] | None = None
    starts: int = 0
    exit_code: int | None = None

    def row(self, public_ip: str) -> dict[str, Any]:
        offer, now = self.offer, time.time()
        running = self.actual_status == "running"
        dph = offer.dph_total(self.disk)
        ssh = self.ports.get("22/tcp")
        host_ports = [int(b[0]["HostPort"]) for b in self.ports.values() if b]
        return {
            "id": self.id,
            "machine_id": offer.machine_id,
            "host_id": offer.host_id,
            "bundle_id": offer.id,
            "actual_status": self.actual_status,
            "intended_status": self.intended_status,
            "cur_state": self.cur_state,
            "next_state": self.cur_state,
            "status_msg": self.status_msg,
            "label": self.label,
            "image_uuid": self.image,
            "image_runtype": self.runtype,
            "image_args": self.args or [],
            "extra_env": [[k, v] for k, v in self.env.items()],
            "onstart": self.onstart,
            "template_id": None,
            "template_hash_id": self.template_hash_id,
            "template_name": None,
            "public_ipaddr": public_ip,
            "local_ipaddrs": "127.0.0.1",
            "ports": dict(self.ports),
            "ssh_host": public_ip,
            "ssh_port": int(ssh[0]["HostPort"]) if ssh else None,
            "ssh_idx": "1",
            "machine_dir_ssh_port": None,
            "direct_port_start": min(host_ports) if host_ports else -1,
            "direct_port_end": max(host_ports) if host_ports else -1,
            "direct_port_count": offer.direct_port_count,
            "gpu_name": offer.gpu_name,
            "num_gpus": offer.num_gpus,
            "gpu_ram": offer.gpu_ram,
            "gpu_totalram": offer.gpu_ram * offer.num_gpus,
            "gpu_util": 0.0 if running else None,
            "gpu_temp": 40.0 if running else None,
            "gpu_arch": "nvidia",
            "cpu_name": "AMD EPYC 7543",
            "cpu_cores": int(offer.cpu_cores_effective * 2),
            "cpu_cores_effective": offer.cpu_cores_effective,
            "cpu_ram": offer.cpu_ram,
            "cpu_util": 0.0 if running else None,
            "mem_limit": offer.cpu_ram / 1000,
            "mem_usage": 0.5 if running else None,
            "vmem_usage": 0.0 if running else None,
            "disk_space": self.disk,
            "disk_usage": 1.0,
            "disk_util": round(1.0 / max(self.disk, 1.0), 4),
            "disk_name": "nvme",
            "disk_bw": 3000.0,
            "dph_base": offer.dph_base,
            "dph_total": dph,
            "storage_cost": offer.storage_cost,
            "storage_total_cost": round(dph - offer.dph_base, 6),
            "inet_up": offer.inet_up,
            "inet_down": offer.inet_down,
            "inet_up_cost": 0.0,
            "inet_down_cost": 0.0,
            "inet_up_billed": None,
            "inet_down_billed": None,
            "reliability2": offer.reliability,
            "geolocation": offer.geolocation,
            "verification": "verified" if offer.verified else "unverified",
            "cuda_max_good": offer.cuda_max_good,
            "driver_version": offer.driver_version,
            "compute_cap": 890,
            "pci_gen": 4.0,
            "pcie_bw": 25.0,
            "dlperf": offer.dlperf,
            "total_flops": offer.dlperf,
            "start_date": self.created_at,
            "end_date": self.created_at + 30 * 86400,
            "uptime_mins": round((now - self.running_since) / 60.0, 3) if running and self.running_since else None,
            "client_run_time": 0.0,
            "host_run_time": 0.0,
            "time_remaining": "",
            "is_bid": False,
            "min_bid": round(offer.dph_base * 0.6, 6),
            "rentable": True,
            "logo": "",
            "webpage": None,
            "jupyter_token": f"{self.id:x}" * 4,
            "external": False,
            "hosting_type": 0,
            "vmem": None,
            "volume_info": None,
        }


@dataclass
class FakeVastState:
    """Everything the fake knows; owned by the server's event loop."""

    config: FakeVastConfig
    url: str = ""
    instances: dict[int, FakeInstance] = field(default_factory=dict)
    destroyed: set[int] = field(default_factory=set)
    calls: Counter[str] = field(default_factory=Counter)
    statuses: dict[str, Counter[str]] = field(default_factory=lambda: defaultdict(Counter))
    last_call: dict[tuple[str, str], float] = field(default_factory=dict)
    rate_limited: int = 0
    next_id: Iterator[int] = field(default_factory=lambda: itertools.count(1))
    background: set[asyncio.Task[Any]] = field(default_factory=set)
    container_keys: dict[str, int] = field(default_factory=dict)

    def new_id(self) -> int:
        return self.config.first_instance_id + next(self.next_id) - 1

    def offer_available(self, offer: FakeOffer) -> bool:
        return not any(
            inst.offer.id == offer.id and inst.intended_status == "running" for inst in self.instances.values()
        )

    def spawn(self, coro: Awaitable[Any]) -> asyncio.Task[Any]:
        task = asyncio.ensure_future(coro)
        self.background.add(task)
        task.add_done_callback(self.background.discard)
        return task


_STATE = web.AppKey("state", FakeVastState)


# --------------------------------------------------------------------------------------------
# Responses
# --------------------------------------------------------------------------------------------


def _json(data: Any, status: int = 200) -> web.Response:
    # Exactly "application/json" (no charset): `vastai search offers` refuses anything else.
    return web.Response(body=json.dumps(data).encode(), status=status, headers={"Content-Type": _JSON})


def _error(status: int, error: str, msg: str) -> web.Response:
    return _json({"success": False, "error": error, "msg": msg}, status)


# --------------------------------------------------------------------------------------------
# Instance processes and transitions
# --------------------------------------------------------------------------------------------


def _process_env(state: FakeVastState, inst: FakeInstance) -> dict[str, str]:
    config = state.config
    env: dict[str, str] = {}
    if config.inherit_env:
        env.update(
            {
                k: v
                for k, v in os.environ.items()
                if k not in ("VASTAI_API_KEY", "VAST_API_KEY", "CONTAINER_API_KEY", "CONTAINER_ID")
            }
        )
    env.update(config.extra_env)
    env.update({k: v for k, v in inst.env.items() if not k.startswith("-")})
    agent_container_port = inst.env.get("GPUQ_AGENT_PORT", "8000")
    binding = inst.ports.get(f"{agent_container_port}/tcp")
    env["GPUQ_AGENT_PORT"] = binding[0]["HostPort"] if binding else str(_free_port())
    env["GPUQ_AGENT_HOST"] = "127.0.0.1"
    env["CONTAINER_ID"] = str(inst.id)
    env["CONTAINER_API_KEY"] = inst.container_key
    env["VAST_URL"] = state.url
    env["PUBLIC_IPADDR"] = config.public_ipaddr
    env["GPUQ_AGENT_PROVIDER"] = "vast"
    env.setdefault("GPUQ_AGENT_INSTANCE_ID", str(inst.id))
    if "GPUQ_AGENT_INSTANCE_ID" not in inst.env:
        env["GPUQ_AGENT_INSTANCE_ID"] = str(inst.id)
    for name, bindings in inst.ports.items():
        port, _, proto = name.partition("/")
        if bindings:
            env[f"VAST_{proto.upper()}_PORT_{port}"] = bindings[0]["HostPort"]
    return env


def _start_process(state: FakeVastState, inst: FakeInstance) -> None:
    config = state.config
    command = config.image_commands.get(inst.image or "", config.command)
    out: Any = subprocess.DEVNULL
    if config.log_dir is not None:
        config.log_dir.mkdir(parents=True, exist_ok=True)
        out = open(config.log_dir / f"instance-{inst.id}.log", "ab")  # noqa: SIM115
    try:
        inst.proc = subprocess.Popen(
            command,
            env=_process_env(state, inst),
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
            cwd=str(config.workdir) if config.workdir else None,
        )
    finally:
        if out is not subprocess.DEVNULL:
            out.close()


async def _terminate(proc: subprocess.Popen[bytes] | None, grace_s: float) -> int | None:
    """SIGTERM the process group, wait ``grace_s``, then SIGKILL it (docker stop, more or less)."""
    if proc is None:
        return None
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            await asyncio.to_thread(proc.wait, grace_s)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            await asyncio.to_thread(proc.wait)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)  # leftovers of the group (children that ignored SIGTERM)
    return proc.returncode


def _assign_ports(inst: FakeInstance) -> None:
    inst.ports = {
        name: [{"HostIp": "0.0.0.0", "HostPort": str(_free_port())}]
        for name in _container_ports(inst.env, inst.runtype)
    }


def _transition(state: FakeVastState, inst: FakeInstance, coro: Callable[[], Awaitable[None]]) -> None:
    if inst.task is not None and not inst.task.done():
        inst.task.cancel()
    inst.task = state.spawn(coro())


async def _boot(state: FakeVastState, inst: FakeInstance, loading_delay_s: float) -> None:
    config = state.config
    await asyncio.sleep(config.schedule_delay_s)
    inst.actual_status, inst.status_msg = "loading", f"Pulling image {inst.image}"
    await asyncio.sleep(loading_delay_s)
    _assign_ports(inst)
    inst.exit_code = None
    _start_process(state, inst)
    inst.actual_status, inst.cur_state = "running", "running"
    inst.status_msg = f"success, running {inst.image}"
    inst.running_since = time.time()
    inst.starts += 1


async def _halt(state: FakeVastState, inst: FakeInstance, delay_s: float) -> None:
    await asyncio.sleep(delay_s)
    inst.status_msg = "stopping"
    code = await _terminate(inst.proc, state.config.stop_grace_s)
    inst.proc = None
    inst.exit_code = code
    inst.actual_status, inst.cur_state, inst.status_msg = "stopped", "stopped", "stopped"
    inst.ports, inst.running_since = {}, None


async def _watch_processes(state: FakeVastState) -> None:
    """A container whose process dies while it should run is ``exited``, as on Vast."""
    while True:
        await asyncio.sleep(0.1)
        for inst in list(state.instances.values()):
            if (
                inst.proc is not None
                and inst.actual_status == "running"
                and inst.intended_status == "running"
                and inst.proc.poll() is not None
            ):
                inst.exit_code = inst.proc.returncode
                inst.proc = None
                inst.actual_status = "exited"
                inst.status_msg = f"container exited with code {inst.exit_code}"
                inst.ports, inst.running_since = {}, None


def _request_start(state: FakeVastState, inst: FakeInstance) -> None:
    if inst.intended_status == "running" and (inst.stuck or inst.actual_status in ("running", "loading", None)):
        return  # already on its way (a stuck start stays stuck: the GPU is still someone else's)
    inst.intended_status, inst.cur_state = "running", "running"
    faults = state.config.faults
    if inst.actual_status in ("stopped", "exited") and faults.stuck_starts > 0:
        faults.stuck_starts -= 1
        inst.stuck = True
        if inst.task is not None:
            inst.task.cancel()
        inst.status_msg = "scheduling: waiting for the machine's GPU (rented by another client)"
        return
    inst.stuck = False
    inst.status_msg = "scheduling"
    was_running = inst.proc is not None and inst.proc.poll() is None

    async def go() -> None:
        if was_running:  # a stop was under way: finish it first
            await _halt(state, inst, 0.0)
        await _boot(state, inst, state.config.restart_loading_delay_s)

    _transition(state, inst, go)


def _request_stop(state: FakeVastState, inst: FakeInstance) -> None:
    if inst.intended_status == "stopped":
        return
    inst.intended_status = "stopped"
    inst.stuck = False
    if inst.proc is None and inst.actual_status != "running":
        if inst.task is not None:
            inst.task.cancel()
        inst.actual_status, inst.cur_state, inst.status_msg = "stopped", "stopped", "stopped"
        inst.ports = {}
        return
    _transition(state, inst, lambda: _halt(state, inst, state.config.stop_delay_s))


def _destroy(state: FakeVastState, inst: FakeInstance) -> None:
    """Gone at once for the API; its process is stopped in the background (SIGTERM, grace, SIGKILL)."""
    if inst.task is not None:
        inst.task.cancel()
    state.instances.pop(inst.id, None)
    state.destroyed.add(inst.id)
    state.container_keys.pop(inst.container_key, None)
    inst.actual_status, inst.intended_status, inst.cur_state = None, "stopped", "unloaded"
    proc, inst.proc = inst.proc, None
    if proc is not None:
        state.spawn(_terminate(proc, state.config.stop_grace_s))


# --------------------------------------------------------------------------------------------
# Middleware: call counting, rate limits, faults, auth
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Caller:
    token: str
    instance_id: int | None  # None: the account key


def _endpoint(request: web.Request) -> str | None:
    return _ENDPOINT_OF.get(request.match_info.handler)


def _token_of(request: web.Request) -> str:
    header = request.headers.get("Authorization", "")
    if header.startswith("Bearer "):
        return header[7:].strip()
    return request.query.get("api_key", "")


@web.middleware
async def _vast_edge(
    request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
) -> web.StreamResponse:
    endpoint = _endpoint(request)
    if endpoint is None:
        return await handler(request)
    state = request.app[_STATE]
    state.calls[endpoint] += 1
    response = _limited(state, request, endpoint) or await handler(request)
    state.statuses[endpoint][str(response.status)] += 1
    return response


def _limited(state: FakeVastState, request: web.Request, endpoint: str) -> web.Response | None:
    """429 / 5xx faults and rate limits, decided before anything runs (as Vast's edge does)."""
    faults = state.config.faults
    if faults.rate_limit_burst and (not faults.rate_limit_endpoints or endpoint in faults.rate_limit_endpoints):
        faults.rate_limit_burst -= 1
        return _too_many(state, endpoint, 0.0)
    interval = state.config.rate_limits_s.get(endpoint, 0.0)
    if interval > 0:
        key = (_token_of(request) or (request.remote or ""), endpoint)
        now = time.monotonic()
        last = state.last_call.get(key)
        if last is not None and now - last < interval:
            return _too_many(state, endpoint, interval)
        state.last_call[key] = now
    if faults.error_burst and (not faults.error_endpoints or endpoint in faults.error_endpoints):
        faults.error_burst -= 1
        status = faults.error_status
        return web.Response(
            text=f"<html><body><h1>{status} Server Error</h1></body></html>", status=status, content_type="text/html"
        )
    return None


def _too_many(state: FakeVastState, endpoint: str, interval: float) -> web.Response:
    state.rate_limited += 1
    message = "API requests too frequent"
    if interval:
        message += f": endpoint threshold={interval:g}s"
    if state.rate_limited % state.config.rate_limit_text_every == 0:
        return web.Response(text=message, status=429, content_type="text/plain")
    return _error(429, "rate_limited", message)


def _auth(request: web.Request, *, instance_id: int | None = None) -> _Caller | web.Response:
    """The caller, or the error Vast answers. Container keys reach only their own instance."""
    state = request.app[_STATE]
    config = state.config
    if config.faults.auth_error_status is not None:
        return _error(config.faults.auth_error_status, "auth_error", "Invalid user key")
    token = _token_of(request)
    if token and secrets.compare_digest(token, config.api_key):
        return _Caller(token, None)
    owner = state.container_keys.get(token) if token else None
    if owner is not None:
        if instance_id is None or instance_id != owner:
            return _error(401, "auth_error", "this API key may only manage its own instance")
        return _Caller(token, owner)
    return _error(config.bad_key_status, "auth_error", "Invalid user key")


# --------------------------------------------------------------------------------------------
# Vast endpoints
# --------------------------------------------------------------------------------------------


def _instance_id(request: web.Request) -> int | None:
    raw = request.match_info.get("id", "")
    return int(raw) if raw.isdigit() else None


async def gpu_names(request: web.Request) -> web.Response:
    names = sorted({o.gpu_name for o in request.app[_STATE].config.offers} | {"RTX 3080", "RTX A6000", "L40S"})
    return _json({"gpu_names": names})


async def current_user(request: web.Request) -> web.Response:
    caller = _auth(request)
    if isinstance(caller, web.Response):
        return caller
    return _json(
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
    caller = _auth(request, instance_id=vid)
    if isinstance(caller, web.Response):
        return caller
    state = request.app[_STATE]
    inst = state.instances.get(vid) if vid is not None else None
    return _json({"instances": inst.row(state.config.public_ipaddr) if inst else None})


async def list_v0(request: web.Request) -> web.Response:
    caller = _auth(request)
    if isinstance(caller, web.Response):
        return caller
    return _error(410, "gone", "GET /api/v0/instances/ is retired: use GET /api/v1/instances/")


def _coerce(value: Any, like: Any) -> Any:
    if isinstance(like, bool):
        if isinstance(value, str):
            return value.strip().lower() in ("true", "1", "yes")
        return bool(value)
    if isinstance(like, int | float) and not isinstance(value, bool):
        try:
            return float(value)
        except (TypeError, ValueError):
            return value
    if isinstance(value, str):
        return value.replace("_", " ") if isinstance(like, str) and " " in like else value
    return value


def _matches(row: Mapping[str, Any], filters: Mapping[str, Any]) -> bool:
    """Vast's query language: ``{"field": {"op": value}}`` (a bare value means ``eq``)."""
    for name, condition in filters.items():
        if name not in row:
            continue  # unknown field: ignored
        actual = row[name]
        ops = condition if isinstance(condition, Mapping) else {"eq": condition}
        for op, wanted in ops.items():
            if op in ("in", "notin"):
                items = wanted if isinstance(wanted, list) else [wanted]
                found = any(actual == _coerce(item, actual) if item is not None else actual is None for item in items)
                if found != (op == "in"):
                    return False
                continue
            if wanted is None:
                if (op == "eq") != (actual is None):
                    return False
                continue
            target = _coerce(wanted, actual)
            if op in ("eq", "neq"):
                if (actual == target) != (op == "eq"):
                    return False
                continue
            if actual is None or not isinstance(target, int | float) or not isinstance(actual, int | float):
                return False
            if not {"gt": actual > target, "gte": actual >= target, "lt": actual < target, "lte": actual <= target}.get(
                op, True
            ):
                return False
    return True


def _sort(rows: list[dict[str, Any]], order: list[tuple[str, bool]]) -> list[dict[str, Any]]:
    for column, descending in reversed(order):
        present = [r for r in rows if r.get(column) is not None]
        missing = [r for r in rows if r.get(column) is None]
        present.sort(key=lambda r, c=column: r[c], reverse=descending)  # type: ignore[misc]
        rows = present + missing
    return rows


def _token(offset: int) -> str:
    return base64.urlsafe_b64encode(json.dumps({"offset": offset}).encode()).decode()


def _offset(token: str) -> int:
    try:
        return int(json.loads(base64.urlsafe_b64decode(token.encode()))["offset"])
    except (ValueError, KeyError, TypeError):
        return 0


async def list_v1(request: web.Request) -> web.Response:
    caller = _auth(request)
    if isinstance(caller, web.Response):
        return caller
    state = request.app[_STATE]
    try:
        filters = json.loads(request.query.get("select_filters", "{}") or "{}")
        order_raw = json.loads(request.query.get("order_by", "[]") or "[]")
        limit = int(request.query.get("limit", "25"))
    except ValueError as exc:
        return _error(400, "invalid_args", f"bad query parameter: {exc}")
    if not isinstance(filters, dict) or not isinstance(order_raw, list):
        return _error(400, "invalid_args", "select_filters must be an object and order_by a list")
    limit = max(1, min(limit, 25))
    every = [inst.row(state.config.public_ipaddr) for inst in state.instances.values()]
    rows = [row for row in every if _matches(row, filters)]
    order = [
        (str(o.get("col", "id")), str(o.get("dir", "asc")).lower() == "desc") for o in order_raw if isinstance(o, dict)
    ] or [("id", False)]
    rows = _sort(rows, order)
    start = _offset(request.query.get("after_token", ""))
    page = rows[start : start + limit]
    more = start + limit < len(rows)
    labels = Counter(str(row.get("label") or "") for row in every)
    return _json(
        {
            "success": True,
            "instances_found": len(page),
            "total_instances": len(every),
            "label_counts": dict(labels),
            "next_token": _token(start + limit) if more else None,
            "instances": page,
        }
    )


async def instance_filters(request: web.Request) -> web.Response:
    caller = _auth(request)
    if isinstance(caller, web.Response):
        return caller
    state = request.app[_STATE]
    combos = {(i.actual_status, i.label, i.offer.gpu_name) for i in state.instances.values()}
    return _json(
        {
            "filters": [
                {"actual_status": a, "label": lab, "gpu_name": g, "verification": "verified"}
                for a, lab, g in sorted(combos, key=str)
            ]
        }
    )


async def _json_body(request: web.Request) -> dict[str, Any] | web.Response:
    try:
        body = await request.json() if request.can_read_body else {}
    except ValueError:
        return _error(400, "invalid_args", "request body is not JSON")
    return body if isinstance(body, dict) else _error(400, "invalid_args", "request body must be an object")


async def manage_instance(request: web.Request) -> web.Response:
    vid = _instance_id(request)
    caller = _auth(request, instance_id=vid)
    if isinstance(caller, web.Response):
        return caller
    body = await _json_body(request)
    if isinstance(body, web.Response):
        return body
    state = request.app[_STATE]
    inst = state.instances.get(vid) if vid is not None else None
    if inst is None:
        return _error(404, "no_such_instance", f"Instance {vid} not found")
    if "state" in body:
        wanted = body["state"]
        if wanted == "stopped":
            if state.config.faults.stop_fails > 0:
                state.config.faults.stop_fails -= 1
                return _json({"success": False, "msg": "Unable to stop instance: machine did not respond"})
            _request_stop(state, inst)
        elif wanted == "running":
            _request_start(state, inst)
        else:
            return _error(400, "invalid_args", f"unknown state {wanted!r}")
    if "label" in body:
        inst.label = None if body["label"] is None else str(body["label"])
    return _json({"success": True})


async def destroy_instance(request: web.Request) -> web.Response:
    vid = _instance_id(request)
    caller = _auth(request, instance_id=vid)
    if isinstance(caller, web.Response):
        return caller
    state = request.app[_STATE]
    inst = state.instances.get(vid) if vid is not None else None
    if inst is None:
        return _error(404, "no_such_instance", f"Instance {vid} not found")
    _destroy(state, inst)
    return _json({"success": True, "msg": "Instance destroyed successfully"})


_QUERY_CONTROL = {"order", "type", "limit", "allocated_storage", "disable_bundling", "select_cols"}


async def bundles(request: web.Request) -> web.Response:
    caller = _auth(request)
    if isinstance(caller, web.Response):
        return caller
    if request.method == "GET":
        try:
            query = json.loads(request.query.get("q", "{}") or "{}")
        except ValueError:
            return _error(400, "invalid_args", "q is not JSON")
    else:
        body = await _json_body(request)
        if isinstance(body, web.Response):
            return body
        query = body.get("q", body) if isinstance(body.get("q"), dict) else body
    if not isinstance(query, dict):
        return _error(400, "invalid_args", "query must be an object")
    state = request.app[_STATE]
    try:
        storage = float(query.get("allocated_storage", 5.0) or 5.0)
        limit = int(query.get("limit", 64) or 64)
    except (TypeError, ValueError):
        return _error(400, "invalid_args", "allocated_storage and limit must be numbers")
    filters = {k: v for k, v in query.items() if k not in _QUERY_CONTROL}
    rows = [o.row(storage) for o in state.config.offers if state.offer_available(o)]
    rows = [row for row in rows if _matches(row, filters)]
    order = [
        (str(pair[0]), str(pair[1]).lower() == "desc")
        for pair in query.get("order") or []
        if isinstance(pair, list | tuple) and len(pair) == 2
    ] or [("score", True)]
    return _json({"offers": _sort(rows, order)[: max(1, limit)]})


async def create_instance(request: web.Request) -> web.Response:
    caller = _auth(request)
    if isinstance(caller, web.Response):
        return caller
    body = await _json_body(request)
    if isinstance(body, web.Response):
        return body
    state = request.app[_STATE]
    offer_id = request.match_info.get("offer_id", "")
    offer = next((o for o in state.config.offers if str(o.id) == offer_id), None)
    if offer is None or not state.offer_available(offer):
        return _error(400, "no_such_ask", f"Instance type {offer_id} is no longer available")
    if not body.get("image") and not body.get("template_hash_id"):
        return _error(400, "invalid_args", "image or template_hash_id is required")
    env = body.get("env") or {}
    if not isinstance(env, dict):
        return _error(400, "invalid_args", "env must be an object")
    try:
        disk = float(body.get("disk") or 8.0)
    except (TypeError, ValueError):
        return _error(400, "invalid_args", "disk must be a number")
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
        _transition(state, inst, lambda: _boot(state, inst, state.config.loading_delay_s))
    if state.config.faults.create_lost_responses > 0:
        state.config.faults.create_lost_responses -= 1
        return web.Response(
            text="<html><body><h1>504 Gateway Time-out</h1></body></html>", status=504, content_type="text/html"
        )
    return _json({"success": True, "new_contract": inst.id})


# --------------------------------------------------------------------------------------------
# Test hooks
# --------------------------------------------------------------------------------------------


def _account_only(request: web.Request) -> web.Response | None:
    token = _token_of(request)
    config = request.app[_STATE].config
    if token and secrets.compare_digest(token, config.api_key):
        return None
    return _error(401, "auth_error", "the test hooks need the account key")


async def get_calls(request: web.Request) -> web.Response:
    state = request.app[_STATE]
    return _json(
        {
            "calls": dict(state.calls),
            "statuses": {k: dict(v) for k, v in state.statuses.items()},
            "rate_limited": state.rate_limited,
        }
    )


async def reset_calls(request: web.Request) -> web.Response:
    if (denied := _account_only(request)) is not None:
        return denied
    state = request.app[_STATE]
    state.calls.clear()
    state.statuses.clear()
    state.last_call.clear()
    state.rate_limited = 0
    return _json({"ok": True})


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
    return _json(_faults_view(request.app[_STATE].config))


async def set_faults(request: web.Request) -> web.Response:
    if (denied := _account_only(request)) is not None:
        return denied
    body = await _json_body(request)
    if isinstance(body, web.Response):
        return body
    config = request.app[_STATE].config
    try:
        for name, value in body.items():
            if name in _TUNABLE:
                setattr(config, name, value)
            else:
                setattr(config.faults, name, value)
    except (ValidationError, ValueError, AttributeError) as exc:
        return _error(400, "invalid_args", str(exc)[:500])
    return _json(_faults_view(config))


async def clear_faults(request: web.Request) -> web.Response:
    if (denied := _account_only(request)) is not None:
        return denied
    config = request.app[_STATE].config
    config.faults = FakeVastFaults()
    return _json(_faults_view(config))


async def get_instances(request: web.Request) -> web.Response:
    if (denied := _account_only(request)) is not None:
        return denied
    state = request.app[_STATE]
    return _json(
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
    if (denied := _account_only(request)) is not None:
        return denied
    state = request.app[_STATE]
    for inst in list(state.instances.values()):
        _destroy(state, inst)
    pending = [task for task in state.background if not task.done()]
    if pending:
        await asyncio.gather(*pending, return_exceptions=True)
    state.config.faults = FakeVastFaults()
    state.calls.clear()
    state.statuses.clear()
    state.last_call.clear()
    state.rate_limited = 0
    return _json({"ok": True})


class FakeVastControl:
    """Synchronous helper for the test hooks (``/__fake__/*``) of a running fake."""

    def __init__(self, url: str, api_key: str) -> None:
        import httpx

        self._http = httpx.Client(
            base_url=url.rstrip("/"), timeout=30.0, headers={"Authorization": f"Bearer {api_key}"}
        )

    def close(self) -> None:
        self._http.close()

    def calls(self) -> dict[str, int]:
        return dict(self._http.get(_CONTROL + "calls").json()["calls"])

    def statuses(self) -> dict[str, dict[str, int]]:
        return dict(self._http.get(_CONTROL + "calls").json()["statuses"])

    def reset_calls(self) -> None:
        self._http.delete(_CONTROL + "calls").raise_for_status()

    def set(self, **fields: Any) -> dict[str, Any]:
        """Arm faults (:class:`FakeVastFaults` fields) or change delays/rate limits."""
        response = self._http.post(_CONTROL + "faults", json=fields)
        response.raise_for_status()
        return dict(response.json())

    def instances(self) -> list[dict[str, Any]]:
        return list(self._http.get(_CONTROL + "instances").json()["instances"])

    def instance(self, instance_id: int) -> dict[str, Any] | None:
        return next((i for i in self.instances() if i["id"] == instance_id), None)

    def destroyed(self) -> list[int]:
        return list(self._http.get(_CONTROL + "instances").json()["destroyed"])

    def reset(self) -> None:
        """Destroy every instance, clear faults and counters."""
        self._http.delete(_CONTROL + "instances").raise_for_status()


# --------------------------------------------------------------------------------------------
# App and servers
# --------------------------------------------------------------------------------------------


async def _lifecycle(app: web.Application) -> AsyncIterator[None]:
    state = app[_STATE]
    watcher = asyncio.create_task(_watch_processes(state))
    yield
    watcher.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await watcher
    await shutdown_instances(state)


async def shutdown_instances(state: FakeVastState) -> None:
    """Stop every instance process (SIGTERM, grace, SIGKILL) and every transition task."""
    for inst in list(state.instances.values()):
        if inst.task is not None:
            inst.task.cancel()
    await asyncio.gather(
        *(_terminate(inst.proc, state.config.stop_grace_s) for inst in state.instances.values()), return_exceptions=True
    )
    pending = [task for task in state.background if not task.done()]
    for task in pending:
        task.cancel()
    if pending:
        await asyncio.gather(*pending, return_exceptions=True)


_ENDPOINT_OF: dict[Callable[..., Any], str] = {
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


def build_app(config: FakeVastConfig | None = None) -> web.Application:
    """The fake Vast API as an aiohttp app (``state.url`` is set by :func:`start_fake_vast`)."""
    app = web.Application(middlewares=[_vast_edge])
    app[_STATE] = FakeVastState(config=config or FakeVastConfig())
    r = app.router
    r.add_get("/api/v0/gpu_names/unique/", gpu_names)
    r.add_get("/api/v0/users/current", current_user)
    r.add_get("/api/v0/users/current/", current_user)
    r.add_get("/api/v0/instances/", list_v0)
    r.add_get("/api/v0/instances/filters/", instance_filters)
    r.add_get("/api/v0/instances/{id}/", show_instance)
    r.add_put("/api/v0/instances/{id}/", manage_instance)
    r.add_delete("/api/v0/instances/{id}/", destroy_instance)
    r.add_get("/api/v1/instances/", list_v1)
    r.add_post("/api/v0/bundles/", bundles)
    r.add_get("/api/v0/bundles/", bundles)
    r.add_put("/api/v0/asks/{offer_id}/", create_instance)
    r.add_get(_CONTROL + "calls", get_calls)
    r.add_delete(_CONTROL + "calls", reset_calls)
    r.add_get(_CONTROL + "faults", get_faults)
    r.add_post(_CONTROL + "faults", set_faults)
    r.add_delete(_CONTROL + "faults", clear_faults)
    r.add_get(_CONTROL + "instances", get_instances)
    r.add_delete(_CONTROL + "instances", destroy_all)
    app.cleanup_ctx.append(_lifecycle)
    return app


@dataclass
class FakeVastServer:
    """A running fake. ``port`` is the bound port (also when started with port 0)."""

    runner: web.AppRunner
    host: str
    port: int

    @property
    def state(self) -> FakeVastState:
        return self.runner.app[_STATE]

    @property
    def url(self) -> str:
        host = self.host if self.host not in ("", "0.0.0.0", "::") else "127.0.0.1"
        return f"http://{host}:{self.port}"

    async def close(self) -> None:
        await self.runner.cleanup()


async def start_fake_vast(
    host: str = "127.0.0.1", port: int = 0, config: FakeVastConfig | None = None
) -> FakeVastServer:
    """Start the fake on the running event loop; port 0 picks a free port."""
    runner, bound = await start_site(build_app(config), host, port)
    server = FakeVastServer(runner=runner, host=host, port=bound)
    server.state.url = server.url
    return server


@contextlib.contextmanager
def serve_in_thread(
    config: FakeVastConfig | None = None, *, host: str = "127.0.0.1", port: int = 0
) -> Iterator[FakeVastServer]:
    """Run the fake on its own event loop in a daemon thread (for synchronous tests); every instance
    process is stopped when the block ends. Talk to it over HTTP; its ``state`` belongs to that thread."""
    with _serve_in_thread(
        lambda: start_fake_vast(host, port, config), FakeVastServer.close, name="fake-vast", close_timeout_s=60
    ) as server:
        yield server


# --------------------------------------------------------------------------------------------
# Command line
# --------------------------------------------------------------------------------------------


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
