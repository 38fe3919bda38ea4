"""The control-plane report: its targets, and its tables (enqueues, their parts, warm box, ready -> running)."""

from __future__ import annotations

import os
from typing import Any

from bench.report import Target, fmt, markdown_table, targets_table

__all__ = ["build_targets", "print_report"]


def build_targets(enqueue: list[dict[str, Any]], warm: dict[str, Any], ready: dict[str, Any]) -> list[Target]:
    within = [r for r in enqueue if r["p99_ms"] is not None and r["p99_ms"] <= 50.0 and r["durable"]]
    best = max(within, key=lambda r: r["enqueues_per_s"], default=None)
    peak = max(enqueue, key=lambda r: r["enqueues_per_s"], default=None)
    note = "" if best is None else f"at concurrency {best['concurrency']}, p99 {best['p99_ms']:.0f} ms"
    if best is None and peak is not None:
        note = f"no level had p99 ≤ 50 ms; peak {peak['enqueues_per_s']:.0f}/s at p99 {peak['p99_ms']:.0f} ms"
    return [
        Target(
            "durable enqueues/s with p99 ≤ 50 ms (best of the concurrency levels)",
            best["enqueues_per_s"] if best else 0.0,
            1000.0,
            "/s",
            higher_is_better=True,
            note=note,
        ),
        Target(
            "warm enqueue -> first token, overhead beyond the model (p50)",
            warm["overhead"]["p50_ms"],
            150.0,
            "ms",
            note=f"p99 {fmt(warm['overhead']['p99_ms'], 0)} ms",
        ),
        Target(
            "agent ready -> first waiting job running (worst of the cycles)",
            ready["ready_to_running"]["max_ms"],
            1000.0,
            "ms",
            note=f"p50 {fmt(ready['ready_to_running']['p50_ms'], 0)} ms",
        ),
    ]


def print_report(
    store: list[dict[str, Any]],
    queue: dict[str, Any],
    enqueue: list[dict[str, Any]],
    warm: dict[str, Any],
    ready: list[dict[str, Any]],
    targets: list[Target],
) -> None:
    _print_enqueue(enqueue)
    _print_parts(store, queue)
    _print_warm(warm)
    _print_ready(ready)
    print("\n## Targets\n")
    print(targets_table(targets))


def _print_enqueue(enqueue: list[dict[str, Any]]) -> None:
    print("\n## Durable enqueues through the jobs API (job queue paused; store + task per job)\n")
    print(
        markdown_table(
            [
                "concurrency",
                "jobs",
                "enqueues/s",
                "p50 ms",
                "p99 ms",
                "max ms",
                "functions CPU ms/job",
                "emulator CPU ms/job",
                "client CPU ms/job",
                "errors",
                "stored & queued",
            ],
            [
                [
                    str(r["concurrency"]),
                    str(r["requests"]),
                    fmt(r["enqueues_per_s"], 0),
                    fmt(r["p50_ms"]),
                    fmt(r["p99_ms"]),
                    fmt(r["max_ms"]),
                    fmt(r["functions_cpu_ms_per_enqueue"]),
                    fmt(r["emulator_cpu_ms_per_enqueue"]),
                    fmt(r["client_cpu_ms_per_enqueue"]),
                    str(r["errors"]),
                    "yes" if r["durable"] else "**NO**",
                ]
                for r in enqueue
            ],
        )
    )
    if enqueue:
        print(
            f"\nfunctions: {enqueue[0]['functions_workers']} gunicorn worker(s). All three processes share "
            f"{os.cpu_count()} cores: CPU ms/job summed over them bounds enqueues/s at 1000 * cores / that sum."
        )


def _print_parts(store: list[dict[str, Any]], queue: dict[str, Any]) -> None:
    print("\n## Its parts alone: the store (SqliteJobStore.create) and the queue (TaskQueue.push), in process\n")
    print(
        markdown_table(
            ["part", "calls", "calls/s", "p50 ms", "p99 ms", "caller CPU ms/call", "emulator CPU ms/call"],
            [
                *[
                    [
                        f"store, {r['threads']} thread(s)",
                        str(r["jobs"]),
                        fmt(r["creates_per_s"], 0),
                        fmt(r["p50_ms"], 3),
                        fmt(r["p99_ms"], 3),
                        fmt(r["cpu_ms_per_create"], 3),
                        "-",
                    ]
                    for r in store
                ],
                [
                    "queue, 1 thread (emulator)",
                    str(queue["pushes"]),
                    fmt(queue["pushes_per_s"], 0),
                    fmt(queue["p50_ms"], 3),
                    fmt(queue["p99_ms"], 3),
                    fmt(queue["client_cpu_ms_per_push"], 3),
                    fmt(queue["emulator_cpu_ms_per_push"], 3),
                ],
            ],
        )
    )


def _print_warm(warm: dict[str, Any]) -> None:
    print("\n## Warm box: enqueue -> first token (public API, SSE)\n")
    e2e, model, over = warm["enqueue_to_first_token"], warm["model_ttft"], warm["overhead"]
    print(
        markdown_table(
            ["measure", "p50 ms", "p99 ms", "n"],
            [
                ["enqueue -> first output event", fmt(e2e["p50_ms"]), fmt(e2e["p99_ms"]), str(e2e["n"])],
                [
                    "model's own time to first token (direct)",
                    fmt(model["p50_ms"]),
                    fmt(model["p99_ms"]),
                    str(model["n"]),
                ],
                ["overhead beyond the model", fmt(over["p50_ms"]), fmt(over["p99_ms"]), str(over["n"])],
                ["  (its mean)", fmt(over["mean_ms"]), "", ""],
                *[[f"  {k}", fmt(v), "", ""] for k, v in warm["breakdown_p50_ms"].items()],
            ],
        )
    )


def _print_ready(ready: list[dict[str, Any]]) -> None:
    print("\n## Agent ready -> first waiting job running (agent log: 'ready' -> 'accepted')\n")
    print(
        markdown_table(
            ["variant", "cycles", "p50 ms", "mean ms", "max ms", "submit -> ready p50 ms", "failures"],
            [
                [
                    r["variant"],
                    str(r["cycles"]),
                    fmt(r["ready_to_running"]["p50_ms"], 0),
                    fmt(r["mean_ms"], 0),
                    fmt(r["ready_to_running"]["max_ms"], 0),
                    fmt(r["submit_to_ready_p50_ms"], 0),
                    str(r["failures"]),
                ]
                for r in ready
            ],
        )
    )
