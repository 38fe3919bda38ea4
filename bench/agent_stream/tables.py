"""The agent-streaming report on stdout: latency, throughput and CPU-per-request tables, then the targets."""

from __future__ import annotations

import argparse
from typing import Any

from bench.report import Target, fmt, markdown_table, targets_table

__all__ = ["print_report"]


def print_report(
    latency: list[dict[str, Any]],
    throughput: list[dict[str, Any]],
    cpu: list[dict[str, Any]],
    idle: dict[str, float],
    targets: list[Target],
    args: argparse.Namespace,
) -> None:
    print(f"\n## Agent streaming overhead ({args.token_delay_ms:g} ms/token, {args.tokens}-token streams)\n")
    print(_latency_table(latency))
    print(f"\n## Throughput (0 ms/token, {args.tokens}-token streams)\n")
    print(_throughput_table(throughput))
    print(f"\n## CPU per request (1-token streams, {args.cpu_concurrency} at a time)\n")
    print(_cpu_table(cpu, idle))
    print("\n## Targets\n")
    print(targets_table(targets))


def _latency_table(latency: list[dict[str, Any]]) -> str:
    return markdown_table(
        [
            "streams",
            "path",
            "n",
            "TTFC p50 ms",
            "TTFC p99 ms",
            "added p50 ms",
            "p50 x direct",
            "p99 x direct",
            "gap p50 ms",
            "gap p99 ms",
            "chunks/s",
            "proxy CPU ms/req",
            "proxy CPU ms/1k tok",
            "errors",
        ],
        [
            [
                str(r["streams"]),
                r["path"],
                str(r["requests"]),
                fmt(r["ttfc_p50_ms"]),
                fmt(r["ttfc_p99_ms"]),
                fmt(r["ttfc_added_p50_ms"]),
                fmt(r["ttfc_p50_x_direct"]),
                fmt(r["ttfc_p99_x_direct"]),
                fmt(r["gap_p50_ms"]),
                fmt(r["gap_p99_ms"]),
                fmt(r["chunks_per_s"], 0),
                fmt(r["cpu_ms_per_request"]) if not r["path"].startswith("direct") else "-",
                fmt(r["cpu_ms_per_1k_tokens"]) if not r["path"].startswith("direct") else "-",
                str(r["errors"] + r["wrong_text"]),
            ]
            for r in latency
        ],
    )


def _throughput_table(throughput: list[dict[str, Any]]) -> str:
    return markdown_table(
        ["streams", "path", "n", "chunks/s", "x direct", "TTFC p50 ms", "proxy CPU ms/1k tok", "errors"],
        [
            [
                str(r["streams"]),
                r["path"],
                str(r["requests"]),
                fmt(r["chunks_per_s"], 0),
                fmt(r["chunks_per_s_x_direct"]),
                fmt(r["ttfc_p50_ms"]),
                fmt(r["cpu_ms_per_1k_tokens"]) if not r["path"].startswith("direct") else "-",
                str(r["errors"] + r["wrong_text"]),
            ]
            for r in throughput
        ],
    )


def _cpu_table(cpu: list[dict[str, Any]], idle: dict[str, float]) -> str:
    return markdown_table(
        ["path", "n", "proxy CPU ms/req", "control plane CPU ms/req", "proxy idle CPU ms/s", "TTFC p50 ms"],
        [
            [
                r["path"],
                str(r["requests"]),
                fmt(r["cpu_ms_per_request"]) if not r["path"].startswith("direct") else "-",
                fmt(r["control_plane_cpu_ms_per_request"]) if r["path"].startswith("gpuq") else "-",
                fmt(idle.get(r["path"])) if not r["path"].startswith("direct") else "-",
                fmt(r["ttfc_p50_ms"]),
            ]
            for r in cpu
        ],
    )
