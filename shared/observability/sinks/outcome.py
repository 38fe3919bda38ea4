"""What one delivery try of an event to a network sink came to."""

from __future__ import annotations

from typing import NamedTuple

__all__ = ["Delivery"]


class Delivery(NamedTuple):
    """``error`` is None when delivered; ``final`` when trying again cannot help (a refused target)."""

    error: str | None
    final: bool = False
