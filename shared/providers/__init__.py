"""Compute providers: start, stop and find GPU boxes. One interface, one file per vendor."""

from shared.providers.base import ComputeProvider

__all__ = ["ComputeProvider"]
