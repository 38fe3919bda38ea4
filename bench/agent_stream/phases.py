"""The load: warm-up and idle window, then the latency, throughput and CPU-per-request phases, round-robin."""

from __future__ import annotations

import argparse
import asyncio
from collections.abc import Callable

import httpx

from bench.agent_stream.constants import log
from bench.agent_stream.harness import Bench

__all__ = ["cpu_phase", "latency_phase", "run_phases", "throughput_phase"]


async def _set_token_delay(server_urls: list[str], delay_s: float) -> None:
    """On every stand-in (Ollama's and the OpenAI-compatible one share the hook)."""
    async with httpx.AsyncClient() as client:
        for url in server_urls:
            (await client.post(url + "/__fake__/faults", json={"token_delay_s": delay_s})).raise_for_status()


async def run_phases(
    bench: Bench, args: argparse.Namespace, server_urls: list[str], on_measuring: Callable[[], None]
) -> dict[str, float]:
    log("warm-up")
    for route in bench.routes:
        await bench.burst(route, 4, 8, None)
        await bench.burst(route, 1, args.tokens, None)

    idle: dict[str, float] = {}
    cpu0 = {r.name: r.cpu_s() for r in bench.routes}
    await asyncio.sleep(args.idle_s)
    for r in bench.routes:
        idle[r.name] = (r.cpu_s() - cpu0[r.name]) * 1000 / args.idle_s
    on_measuring()
    if "latency" in args.phases:
        await latency_phase(bench, args)
    await _set_token_delay(server_urls, 0.0)
    try:
        if "throughput" in args.phases:
            await throughput_phase(bench, args)
        if "cpu" in args.phases:
            await cpu_phase(bench, args)
    finally:
        await _set_token_delay(server_urls, args.token_delay_ms / 1000)
    return idle


async def latency_phase(bench: Bench, args: argparse.Namespace) -> None:
    log(
        f"latency: {args.rounds} rounds, {args.token_delay_ms:g} ms/token, {args.tokens} tokens, streams {args.streams}"
    )
    for round_no in range(args.rounds):
        if bench.out_of_time():
            break
        for n in args.streams:
            for route in bench.order(round_no):
                sample = bench.sample("latency", n, route)
                for _ in range(args.singles if n == 1 else 1):
                    await bench.burst(route, n, args.tokens, sample)
        log(f"  round {round_no + 1}/{args.rounds} done")


async def throughput_phase(bench: Bench, args: argparse.Namespace) -> None:
    log(f"throughput: token delay 0, {args.throughput_rounds} rounds, streams {args.throughput_streams}")
    for round_no in range(args.throughput_rounds):
        if bench.out_of_time():
            break
        for n in args.throughput_streams:
            for route in bench.order(round_no):
                for _ in range(args.singles if n == 1 else 1):
                    await bench.burst(route, n, args.tokens, bench.sample("throughput", n, route))


async def cpu_phase(bench: Bench, args: argparse.Namespace) -> None:
    log(f"CPU per request: {args.cpu_requests} one-token streams per path, {args.cpu_concurrency} at a time")
    blocks = max(1, args.cpu_requests // (args.cpu_concurrency * 5))
    per_block = max(1, args.cpu_requests // (blocks * args.cpu_concurrency))
    for block in range(blocks):
        if bench.out_of_time():
            break
        for route in bench.order(block):
            for _ in range(per_block):
                await bench.burst(route, args.cpu_concurrency, 1, bench.sample("cpu", args.cpu_concurrency, route))
