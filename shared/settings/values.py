"""How setting values are written: comma-separated lists, byte sizes."""

from __future__ import annotations

__all__ = ["KIB", "MIB", "split_csv"]

KIB = 1024
MIB = 1024 * KIB


def split_csv(value: str) -> list[str]:
    return [part.strip() for part in value.split(",") if part.strip()]
