"""Model server start → ready, as the agent's supervisor sees it: by its log line, or by polling its API.

    .venv/bin/python -m bench.server_ready [--rounds 5] [--model FILE.gguf] [--results-dir bench/results]

A real server (llama-cpp-python's, from ``.venv/llama``: ``make llama``) serving the tests' tiny llama
(written with ``gguf``, a few hundred KB) or ``--model``, started ``--rounds`` times each way, the ways
interleaved so that machine load hits them alike:

- **baseline**: its ``/v1/models`` polled every 10 ms, outside the supervisor: when the API first answers;
- **log line**: the supervisor with ``on_load = "Uvicorn running on"`` (then one API call confirms);
- **polling**: the supervisor with no ``on_load``: its API polled with its own backoff (0.1 s doubling
  to 1 s), what an agent does without a pattern.

Each time counts from just before the process is spawned to the moment it is known up. The table gives
medians and each way's ratio to the baseline, measured in the same run.
Results: table on stdout, ``bench/results/server_ready.json``.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

from agent.model_server import ModelServer, ServerConfig
from agent.server_log import LogPatterns
from bench.report import RESULTS_DIR, fmt, markdown_table, ratio, write_results
from shared.tools.devstack import free_port

__all__ = ["main"]

LLAMA_PYTHON = Path(sys.prefix) / "llama" / "bin" / "python"
ON_LOAD = "Uvicorn running on"


def _argv(model: Path, port: int) -> list[str]:
    return [
        str(LLAMA_PYTHON),
        *("-m", "llama_cpp.server", "--model", str(model), "--model_alias", "tiny-llama"),
        *("--host", "127.0.0.1", "--port", str(port), "--n_ctx", "512", "--n_threads", "1"),
    ]


async def _answers(client: httpx.AsyncClient, url: str) -> bool:
    try:
        return (await client.get(url, timeout=2)).status_code == 200
    except httpx.HTTPError:
        return False


async def _baseline(model: Path) -> float:
    port = free_port()
    url = f"http://127.0.0.1:{port}/v1/models"
    started = time.perf_counter()
    devnull = asyncio.subprocess.DEVNULL
    proc = await asyncio.create_subprocess_exec(*_argv(model, port), stdout=devnull, stderr=devnull)
    try:
        async with httpx.AsyncClient() as client:
            while not await _answers(client, url):
                if proc.returncode is not None:
                    raise RuntimeError(f"the server exited with {proc.returncode}")
                await asyncio.sleep(0.01)  # the baseline: polled as tightly as is sensible
        return time.perf_counter() - started
    finally:
        proc.terminate()
        await asyncio.wait_for(proc.wait(), timeout=15)


async def _supervised(model: Path, on_load: str) -> float:
    port = free_port()
    url = f"http://127.0.0.1:{port}/v1/models"
    async with httpx.AsyncClient() as client:
        config = ServerConfig(argv=tuple(_argv(model, port)), patterns=LogPatterns.parse(on_load, "", ""))
        server = ModelServer(config, probe=lambda: _answers(client, url))
        started = time.perf_counter()
        task = asyncio.create_task(server.run())
        try:
            if not await server.wait_up():
                raise RuntimeError(f"the server did not come up: {server.reason}")
            return time.perf_counter() - started
        finally:
            await server.stop()
            await task


async def _measure(model: Path, rounds: int) -> dict[str, list[float]]:
    times: dict[str, list[float]] = {"baseline": [], "log line": [], "polling": []}
    await _baseline(model)  # unmeasured: the first start warms the page cache and the byte-code
    for _ in range(rounds):
        times["baseline"].append(await _baseline(model))
        times["log line"].append(await _supervised(model, ON_LOAD))
        times["polling"].append(await _supervised(model, ""))
    return times


def _table(times: dict[str, list[float]]) -> tuple[str, list[dict[str, Any]]]:
    base = statistics.median(times["baseline"])
    rows, out = [], []
    for way, values in times.items():
        median = statistics.median(values)
        row: dict[str, Any] = {
            "way": way,
            "median_s": median,
            "min_s": min(values),
            "max_s": max(values),
            "vs_baseline": ratio(median, base),
        }
        out.append(row)
        rows.append([way, fmt(median, 3), fmt(min(values), 3), fmt(max(values), 3), fmt(row["vs_baseline"], 2)])
    return markdown_table(["ready by", "median s", "min s", "max s", "vs baseline"], rows), out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--model", type=Path, help="a .gguf model; default: the tests' tiny llama")
    parser.add_argument("--results-dir", type=Path, default=RESULTS_DIR)
    args = parser.parse_args(argv)
    if not LLAMA_PYTHON.exists():
        print(f"{LLAMA_PYTHON} is missing: `make llama` builds it", file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory() as tmp:
        model = args.model
        if model is None:
            from tests.realserver.tiny_model import write_tiny_llama  # the tests' model: one definition

            model = write_tiny_llama(Path(tmp) / "tiny-llama.gguf")
        started = time.perf_counter()
        times = asyncio.run(_measure(model, args.rounds))
    table, rows = _table(times)
    print(f"model server start → ready ({args.rounds} rounds each, {model.name}):\n\n{table}\n")
    settings = {"rounds": args.rounds, "model": str(args.model or "tiny-llama"), "on_load": ON_LOAD}
    payload = {"settings": settings, "ready": rows, "times_s": times, "duration_s": time.perf_counter() - started}
    print(f"wrote {write_results(args.results_dir, 'server_ready', payload)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
