"""Durations in seconds summarized in milliseconds: p50, p99, max and count."""

from __future__ import annotations

from bench.report import percentile

__all__ = ["ms_summary", "x1000"]


def ms_summary(values: list[float]) -> dict[str, float | None]:
    return {
        "p50_ms": x1000(percentile(values, 50)),
        "p99_ms": x1000(percentile(values, 99)),
        "max_ms": x1000(max(values) if values else None),
        "n": len(values),
    }


def x1000(value: float | None) -> float | None:
    return None if value is None else value * 1000
