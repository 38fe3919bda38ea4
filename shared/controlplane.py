"""The control plane's dependencies, built once per process and passed to the core functions.

This module only describes them; ``shared.assembly`` builds them from settings. It imports no group
of ``shared`` at run time (the kernel never does), so every group can depend on it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TypeVar

import httpx

from shared.clock import Clock, SystemClock
from shared.settings import ControlPlaneSettings, split_csv

if TYPE_CHECKING:
    from shared.boxes.pools import Pools
    from shared.boxes.providers.base import ComputeProvider
    from shared.security.signing import NonceCache
    from shared.store.base import JobStore
    from shared.store.blobs import BlobStore
    from shared.store.queue import TaskQueue

__all__ = ["ControlPlane"]

T = TypeVar("T")


@dataclass
class ControlPlane:
    settings: ControlPlaneSettings
    store: JobStore
    queue: TaskQueue
    provider: ComputeProvider
    nonces: NonceCache  # where a replayed signed request is caught (see shared.assembly.build_nonce_cache)
    pools: Pools  # the pools of boxes and the models each serves (shared.boxes.pools)
    clock: Clock = field(default_factory=SystemClock)
    http: httpx.Client = field(default_factory=lambda: httpx.Client(timeout=10.0, follow_redirects=False))
    blobs: BlobStore | None = None  # large finished outputs go to a bucket when configured

    def run(self, coro: Coroutine[Any, Any, T]) -> T:
        """Run one provider call from sync code (functions are sync; providers are async)."""
        return asyncio.run(coro)

    def allow_hosts(self) -> set[str]:
        return {h.lower() for h in split_csv(self.settings.callback_allow_hosts)}
