"""The machines on offer: :class:`FakeOffer` (priced the way Vast prices storage into ``dph_total``),
its row as ``/api/v0/bundles/`` returns it, and the default catalogue."""

from __future__ import annotations

import time
from typing import Any, Final

from pydantic import BaseModel, ConfigDict

__all__ = ["DEFAULT_OFFERS", "FakeOffer"]


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
