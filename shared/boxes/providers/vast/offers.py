"""Vast.ai offers: the search query we post to ``/api/v0/bundles/`` and how we rank what comes back.

Vast's search language (as the ``vastai`` 1.9.1 CLI writes it): every filter is
``{"<field>": {"<op>": value}}`` with ``op`` one of ``eq, neq, gt, gte, lt, lte, in, notin``; besides
the filters the body carries ``order`` (``[[field, "asc"|"desc"], ...]``), ``type``
(``on-demand``/``bid``/``reserved``), ``limit`` and ``allocated_storage`` (GB the price should
include). ``gpu_ram`` is in MB (the CLI multiplies GB by 1000), ``reliability`` is 0..1, GPU names
use spaces ("RTX 4090"; the CLI's ``RTX_4090`` spelling is the same name). The answer is
``{"offers": [...]}``; an offer's ``id`` is the ask id a create is sent to (``PUT /api/v0/asks/{id}/``).

The server applies the filters, but we check them again here: a row that does not match what we
asked for is never rented.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from shared.settings import VastSettings

__all__ = ["OfferQuery", "VastOffer", "normalize_gpu_name", "offer_query", "rank_offers"]


def normalize_gpu_name(name: str) -> str:
    """``RTX_4090`` / ``rtx 4090`` → ``RTX 4090``-style key for comparisons (Vast spells names with spaces)."""
    return " ".join(name.replace("_", " ").split()).upper()


class VastOffer(BaseModel):
    """One row of a bundles search, reduced to what gpuq decides with (``raw`` keeps the whole row)."""

    model_config = ConfigDict(frozen=True)

    id: int
    gpu_name: str = ""
    num_gpus: int = 1
    gpu_ram_gb: float = 0.0
    dph_total: float = 0.0
    reliability: float = 0.0
    geolocation: str = ""
    machine_id: int | None = None
    disk_space_gb: float = 0.0
    verified: bool | None = None
    raw: dict[str, Any] = Field(default_factory=dict, repr=False)

    @classmethod
    def from_row(cls, row: dict[str, Any]) -> VastOffer:
        reliability = row.get("reliability")
        if reliability is None:
            reliability = row.get("reliability2", 0.0)
        verification = row.get("verification")
        verified = row.get("verified")
        if verified is None and verification is not None:
            verified = verification == "verified"
        return cls(
            id=int(row.get("ask_contract_id") or row["id"]),
            gpu_name=str(row.get("gpu_name") or ""),
            num_gpus=int(row.get("num_gpus") or 1),
            gpu_ram_gb=float(row.get("gpu_ram") or 0.0) / 1000.0,
            dph_total=float(row.get("dph_total") or 0.0),
            reliability=float(reliability or 0.0),
            geolocation=str(row.get("geolocation") or ""),
            machine_id=int(row["machine_id"]) if row.get("machine_id") is not None else None,
            disk_space_gb=float(row.get("disk_space") or 0.0),
            verified=verified,
            raw=row,
        )


class OfferQuery(BaseModel):
    """What a box must have. ``None`` means "no constraint"."""

    model_config = ConfigDict(frozen=True)

    gpu_names: tuple[str, ...] = ()
    min_vram_gb: float | None = None
    max_dph: float | None = None
    min_reliability: float | None = None
    disk_gb: float = 20.0
    num_gpus: int = 1
    verified_only: bool = True
    limit: int = 64
    exclude_machine_ids: frozenset[int] = frozenset()

    def bundles_body(self) -> dict[str, Any]:
        """The JSON body of ``POST /api/v0/bundles/`` (same defaults as ``vastai search offers``)."""
        body: dict[str, Any] = {
            "external": {"eq": False},
            "rentable": {"eq": True},
            "rented": {"eq": False},
            "num_gpus": {"eq": self.num_gpus},
            "disk_space": {"gte": self.disk_gb},
        }
        if self.verified_only:
            body["verified"] = {"eq": True}
        if self.gpu_names:
            body["gpu_name"] = {"in": [" ".join(name.replace("_", " ").split()) for name in self.gpu_names]}
        if self.min_vram_gb is not None:
            body["gpu_ram"] = {"gte": self.min_vram_gb * 1000.0}
        if self.max_dph is not None:
            body["dph_total"] = {"lte": self.max_dph}
        if self.min_reliability is not None:
            body["reliability"] = {"gte": self.min_reliability}
        if self.exclude_machine_ids:
            body["machine_id"] = {"notin": sorted(self.exclude_machine_ids)}
        body["order"] = [["dph_total", "asc"]]
        body["type"] = "on-demand"
        body["limit"] = self.limit
        body["allocated_storage"] = self.disk_gb
        return body

    def accepts(self, offer: VastOffer) -> bool:
        """The same constraints, checked on our side."""
        wanted = {normalize_gpu_name(name) for name in self.gpu_names}
        return not (
            (wanted and normalize_gpu_name(offer.gpu_name) not in wanted)
            or (self.min_vram_gb is not None and offer.gpu_ram_gb + 1e-9 < self.min_vram_gb)
            or (self.max_dph is not None and offer.dph_total > self.max_dph + 1e-9)
            or (self.min_reliability is not None and offer.reliability + 1e-9 < self.min_reliability)
            or offer.num_gpus != self.num_gpus
            or (offer.disk_space_gb and offer.disk_space_gb + 1e-9 < self.disk_gb)
            or (self.verified_only and offer.verified is False)
            or (offer.machine_id is not None and offer.machine_id in self.exclude_machine_ids)
        )


def offer_query(settings: VastSettings, **overrides: Any) -> OfferQuery:
    """The query the settings describe (``VASTAI_PREFERRED_GPUS``, ``VASTAI_MIN_VRAM_GB``, …), with
    ``overrides`` (any :class:`OfferQuery` field) on top."""
    base: dict[str, Any] = {
        "gpu_names": tuple(settings.gpu_list()),
        "min_vram_gb": settings.min_vram_gb,
        "max_dph": settings.max_bid_per_hour,
        "min_reliability": settings.min_reliability,
        "disk_gb": settings.default_disk_gb,
        "num_gpus": settings.num_gpus,
        "verified_only": settings.verified_only,
    }
    base.update(overrides)
    return OfferQuery(**base)


def rank_offers(rows: Iterable[dict[str, Any]], query: OfferQuery, preferred: Sequence[str] = ()) -> list[VastOffer]:
    """Offers that match ``query``, cheapest first; at equal price the earlier preferred GPU wins,
    then the more reliable machine."""
    order = {normalize_gpu_name(name): rank for rank, name in enumerate(preferred)}
    offers = [VastOffer.from_row(row) for row in rows]
    matching = [offer for offer in offers if query.accepts(offer)]
    return sorted(
        matching,
        key=lambda o: (
            round(o.dph_total, 6),
            order.get(normalize_gpu_name(o.gpu_name), len(order)),
            -o.reliability,
            o.id,
        ),
    )
