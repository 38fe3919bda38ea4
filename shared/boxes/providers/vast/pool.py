"""A pool of Vast boxes: one :class:`~shared.boxes.providers.vast.provider.VastProvider` per logical box id
of the pool (``<pool>-1`` …, or the operator's instance ids), each with its own rental state.

``get/start/stop`` of a box go to its own provider (its own rental intent and Vast instance); ``list``
shows each logical box under its id plus every other labelled instance under its Vast id, so the reaper
sees leaked rentals; ``reap_stopped`` runs each box's destroy-after-stopped rule.
"""

from __future__ import annotations

import builtins
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from shared.boxes.providers.vast.provider import VastProvider, build_vast_provider
from shared.models import Instance
from shared.settings import VastSettings

__all__ = ["VastPoolProvider"]


class VastPoolProvider:
    name = "vast"

    def __init__(
        self,
        settings: VastSettings,
        box_ids: builtins.list[str],
        *,
        state_dir: Path,
        agent_env: Callable[[str], Mapping[str, str]],
        **options: Any,
    ) -> None:
        if not box_ids:
            raise ValueError("a Vast pool needs at least one box id")
        self.boxes: dict[str, VastProvider] = {}
        for box_id in box_ids:
            # A box id that is a Vast instance id is that rented instance; other ids rent from offers.
            own = settings.model_copy(update={"instance_id": box_id if box_id.isdigit() else ""})
            provider = build_vast_provider(
                own,
                logical_id=box_id,
                state_dir=state_dir,
                agent_env=agent_env(box_id),
                **options,
            )
            self.boxes[box_id] = provider

    def _for(self, instance_id: str) -> VastProvider:
        return self.boxes.get(instance_id) or next(iter(self.boxes.values()))

    async def get(self, instance_id: str) -> Instance | None:
        return await self._for(instance_id).get(instance_id)

    async def start(self, instance_id: str) -> Instance:
        return await self._for(instance_id).start(instance_id)

    async def stop(self, instance_id: str) -> Instance:
        return await self._for(instance_id).stop(instance_id)

    async def list(self) -> builtins.list[Instance]:
        first_id, first = next(iter(self.boxes.items()))
        listed = {instance.id: instance for instance in await first.list()}
        for box_id, provider in self.boxes.items():
            if box_id == first_id:
                continue
            vid = provider.current_vast_id()
            if vid is not None:
                listed.pop(str(vid), None)
            current = await provider.get(box_id)
            if current is not None:
                listed[box_id] = current
        return list(listed.values())

    async def reap_stopped(self, older_than_s: float | None = None) -> builtins.list[str]:
        destroyed: builtins.list[str] = []
        for provider in self.boxes.values():
            destroyed += [d for d in await provider.reap_stopped(older_than_s) if d not in destroyed]
        return destroyed
