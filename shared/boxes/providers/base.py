"""The compute-provider interface.

Every method is idempotent: ``start`` on a running box, ``stop`` on a stopped one do nothing and
return its state. Vendor errors are translated at this boundary into
:class:`~shared.errors.ProviderError`.
"""

from __future__ import annotations

from typing import Protocol

from shared.models import Instance

__all__ = ["ComputeProvider"]


class ComputeProvider(Protocol):
    name: str

    async def get(self, instance_id: str) -> Instance | None:
        """The box's current state, or ``None`` if the provider no longer has it."""
        ...

    async def start(self, instance_id: str) -> Instance:
        """Ask the box to run; returns without waiting for it to boot."""
        ...

    async def stop(self, instance_id: str) -> Instance:
        """Stop the box and confirm it stopped; returns the confirmed state."""
        ...

    async def list(self) -> list[Instance]:
        """Every box this deployment owns."""
        ...
