"""A rented instance: :class:`FakeInstance`, its row with every field the ``vastai`` CLI reads, and the
host ports its container ports are mapped to (fresh on every start, as on Vast)."""

from __future__ import annotations

import asyncio
import socket
import subprocess
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from shared.fakes.vast.offers import FakeOffer

__all__ = ["FakeInstance", "assign_ports", "free_port"]


def free_port() -> int:
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


def assign_ports(inst: FakeInstance) -> None:
    inst.ports = {
        name: [{"HostIp": "0.0.0.0", "HostPort": str(free_port())}] for name in _container_ports(inst.env, inst.runtype)
    }
