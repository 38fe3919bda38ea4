"""Everything one running fake knows: instances, destroyed ids, container keys, call counters and
background tasks. It lives on the server's event loop."""

from __future__ import annotations

import asyncio
import itertools
from collections import Counter, defaultdict
from collections.abc import Awaitable, Iterator
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from shared.fakes.vast.config import FakeVastConfig
from shared.fakes.vast.instances import FakeInstance
from shared.fakes.vast.offers import FakeOffer

__all__ = ["STATE", "FakeVastState"]


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


STATE = web.AppKey("state", FakeVastState)
