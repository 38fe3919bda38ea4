"""Compute providers: start, stop and find GPU boxes. One interface, one file per vendor."""

from shared.boxes.providers.base import ComputeProvider

__all__ = ["ComputeProvider"]
