"""From samples to results: one row per (phase, streams, path) with its ratios to direct, and the targets."""

from __future__ import annotations

import argparse
from typing import Any

from bench.agent_stream.harness import Bench
from bench.report import Target, ratio

__all__ = ["build_rows", "build_targets"]


def build_rows(bench: Bench, phase: str) -> list[dict[str, Any]]:
    rows = []
    for (ph, streams, name), sample in bench.samples.items():
        if ph != phase:
            continue
        rows.append({"streams": streams, "path": name, **sample.row()})
    rows.sort(key=lambda r: (r["streams"], [r_.name for r_ in bench.routes].index(r["path"])))
    baselines = {route.name: route.baseline for route in bench.routes}
    for row in rows:
        base_path = baselines[row["path"]]
        direct = next((r for r in rows if r["streams"] == row["streams"] and r["path"] == base_path), None)
        base = direct or {}
        row["ttfc_added_p50_ms"] = (
            None
            if row["ttfc_p50_ms"] is None or base.get("ttfc_p50_ms") is None
            else row["ttfc_p50_ms"] - base["ttfc_p50_ms"]
        )
        row["ttfc_p50_x_direct"] = ratio(row["ttfc_p50_ms"], base.get("ttfc_p50_ms"))
        row["ttfc_p99_x_direct"] = ratio(row["ttfc_p99_ms"], base.get("ttfc_p99_ms"))
        row["chunks_per_s_x_direct"] = ratio(row["chunks_per_s"], base.get("chunks_per_s"))
    return rows


def _find(rows: list[dict[str, Any]], streams: int, path: str) -> dict[str, Any]:
    return next((r for r in rows if r["streams"] == streams and r["path"] == path), {})


def _openai_targets(latency: list[dict[str, Any]], cpu: list[dict[str, Any]], big: int) -> list[Target]:
    """The same budgets for the agent on its openai backend, against the OpenAI-compatible stand-in direct."""
    o1, o32 = _find(latency, 1, "gpuq-openai"), _find(latency, big, "gpuq-openai")
    if not o1 and not o32:
        return []
    ocpu = next((r for r in cpu if r["path"] == "gpuq-openai"), {})
    label = "agent, openai backend"
    return [
        Target(
            f"{label}: added time to first chunk, 1 stream (p50 - direct p50)", o1.get("ttfc_added_p50_ms"), 1.0, "ms"
        ),
        Target(f"{label}: time to first chunk p50, {big} streams together", o32.get("ttfc_p50_ms"), 15.0, "ms"),
        Target(f"{label}: time to first chunk p99, {big} streams together", o32.get("ttfc_p99_ms"), 35.0, "ms"),
        Target(f"{label}: CPU per 1,000 tokens, {big} streams", o32.get("cpu_ms_per_1k_tokens"), 25.0, "ms"),
        Target(f"{label}: CPU per request (1-token streams)", ocpu.get("cpu_ms_per_request"), 0.5, "ms"),
    ]


def build_targets(
    latency: list[dict[str, Any]], throughput: list[dict[str, Any]], cpu: list[dict[str, Any]], args: argparse.Namespace
) -> list[Target]:
    big = max(args.streams)
    g1, g32 = _find(latency, 1, "gpuq"), _find(latency, big, "gpuq")
    gcpu = next((r for r in cpu if r["path"] == "gpuq"), {})
    targets = [
        Target("agent: added time to first chunk, 1 stream (p50 - direct p50)", g1.get("ttfc_added_p50_ms"), 1.0, "ms"),
        Target(f"agent: time to first chunk p50, {big} streams together", g32.get("ttfc_p50_ms"), 15.0, "ms"),
        Target(f"agent: time to first chunk p99, {big} streams together", g32.get("ttfc_p99_ms"), 35.0, "ms"),
        Target(f"agent: CPU per 1,000 tokens, {big} streams", g32.get("cpu_ms_per_1k_tokens"), 25.0, "ms"),
        Target("agent: CPU per request (1-token streams)", gcpu.get("cpu_ms_per_request"), 0.5, "ms"),
    ]
    targets += _openai_targets(latency, cpu, big)
    if not any(r["path"] == "pyworker" for r in latency):
        return targets

    def versus(label: str, rows: list[dict[str, Any]], streams: int | None, key: str, higher: bool = False) -> None:
        def pick(path: str) -> dict[str, Any]:
            if streams is None:
                return next((r for r in rows if r["path"] == path), {})
            return _find(rows, streams, path)

        value = ratio(pick("gpuq").get(key), pick("pyworker").get(key))
        targets.append(
            Target(
                f"better than PyWorker: {label} (gpuq ÷ PyWorker)",
                value,
                1.0,
                "x",
                higher_is_better=higher,
                strict=True,
            )
        )

    for n in args.streams:
        versus(f"TTFC p50, {n} stream(s)", latency, n, "ttfc_p50_ms")
        versus(f"TTFC p99, {n} stream(s)", latency, n, "ttfc_p99_ms")
        versus(f"chunk gap p99, {n} stream(s)", latency, n, "gap_p99_ms")
        versus(f"CPU per 1,000 tokens, {n} stream(s)", latency, n, "cpu_ms_per_1k_tokens")
    for n in args.throughput_streams:
        versus(f"chunks/s at 0 ms/token, {n} stream(s)", throughput, n, "chunks_per_s", higher=True)
        versus(f"CPU per 1,000 tokens at 0 ms/token, {n} stream(s)", throughput, n, "cpu_ms_per_1k_tokens")
    versus("CPU per request", cpu, None, "cpu_ms_per_request")
    return targets
