"""The fleet as one provider: each box id goes to its pool's provider.

The control plane talks to one :class:`~shared.boxes.providers.base.ComputeProvider`. With several pools
(each with its provider and its own launch settings) this one routes ``get/start/stop`` by the box's
pool, sends ids no pool names (a leaked Vast instance the reaper found) to every provider in turn, and
lists the union of what the providers own.
"""

from __future__ import annotations

import builtins
from collections.abc import Mapping

from shared.boxes.pools import Pools
from shared.boxes.providers.base import ComputeProvider
from shared.models import Instance

__all__ = ["FleetProvider"]


class FleetProvider:
    name = "fleet"

    def __init__(self, pools: Pools, providers: Mapping[str, ComputeProvider]) -> None:
        missing = [p.name for p in pools if p.name not in providers]
        if missing:
            raise ValueError(f"no provider for pool(s) {', '.join(missing)}")
        self._pools = pools
        self._providers = dict(providers)

    def provider_of(self, box_id: str) -> ComputeProvider | None:
        pool = self._pools.of_box(box_id)
        return self._providers[pool.name] if pool is not None else None

    def _distinct(self) -> builtins.list[ComputeProvider]:
        out: builtins.list[ComputeProvider] = []
        for provider in self._providers.values():
            if all(provider is not seen for seen in out):
                out.append(provider)
        return out

    async def get(self, instance_id: str) -> Instance | None:
        provider = self.provider_of(instance_id)
        if provider is not None:
            return await provider.get(instance_id)
        for candidate in self._distinct():
            found = await candidate.get(instance_id)
            if found is not None:
                return found
        return None

    async def start(self, instance_id: str) -> Instance:
        provider = self.provider_of(instance_id)
        if provider is None:
            raise KeyError(f"box {instance_id!r} is in no pool")
        return await provider.start(instance_id)

    async def stop(self, instance_id: str) -> Instance:
        provider = self.provider_of(instance_id)
        if provider is not None:
            return await provider.stop(instance_id)
        for candidate in self._distinct():
            if await candidate.get(instance_id) is not None:
                return await candidate.stop(instance_id)
        raise KeyError(f"no provider knows box {instance_id!r}")

    async def list(self) -> builtins.list[Instance]:
        seen: dict[str, Instance] = {}
        for provider in self._distinct():
            for instance in await provider.list():
                seen.setdefault(instance.id, instance)
        return list(seen.values())
