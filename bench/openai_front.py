"""OpenAI front door benchmark: time to first token through ``/v1/chat/completions`` against the jobs API's
own stream on the same warm box, and how many held requests one functions process carries.

    .venv/bin/python -m bench.openai_front [--rounds 20] [--held 8,24,48,64]

- **TTFT**: on a warm box, alternating, the jobs API (``POST /v1/jobs`` then ``GET /v1/jobs/{id}/stream``
  to the first ``output`` event) and the ``openai`` SDK streaming a chat completion (to the first content
  chunk). The ratio is OpenAI / jobs API, measured in the same run.
- **Held capacity**: N non-streaming requests held through a long cold start by ONE functions process
  (``WORKERS=1``), while a poller times ``GET /v1/models``; the process has ``THREADS`` threads. The row
  where the poller's latency jumps is where held requests start to starve the process.
"""

from __future__ import annotations

import argparse
import tempfile
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import openai

from bench.report import (
    RESULTS_DIR,
    Target,
    fmt,
    int_list,
    markdown_table,
    percentile,
    ratio,
    targets_table,
    write_results,
)
from shared.tools.devstack import DevStack, DevStackConfig, free_port

__all__ = ["main"]

MODEL = "llama3.2:1b"
THREADS = 32


def _parse(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="bench.openai_front", description=(__doc__ or "").split("\n")[0])
    p.add_argument("--rounds", type=int, default=20, help="TTFT samples per path")
    p.add_argument("--held", type=int_list, default=[8, 24, 48, 64], help="held requests per row")
    p.add_argument("--cold-s", type=float, default=8.0, help="the cold start the held requests wait through")
    p.add_argument("--max-s", type=float, default=600.0)
    p.add_argument("--results-dir", type=Path, default=RESULTS_DIR)
    return p.parse_args(argv)


def _stack(root: Path, **fields: Any) -> DevStack:
    config = DevStackConfig(port=free_port(), data_dir=root, token_delay_s=0.005, reaper_period_s=1.0, snooze_s=0.2)
    for key, value in fields.items():
        setattr(config, key, value)
    return DevStack(config)  # started by its with-block


def _jobs_api_ttft(stack: DevStack, http: httpx.Client) -> float:
    started = time.perf_counter()
    job = http.post(stack.url + "/v1/jobs", json={"model": MODEL, "prompt": f"t {uuid.uuid4().hex}"}).json()
    with http.stream("GET", f"{stack.url}/v1/jobs/{job['id']}/stream") as events:
        for line in events.iter_lines():
            if line == "event: output":
                return time.perf_counter() - started
    raise RuntimeError("no output")


def _openai_ttft(sdk: openai.OpenAI) -> float:
    started = time.perf_counter()
    stream = sdk.chat.completions.create(
        model=MODEL, messages=[{"role": "user", "content": f"t {uuid.uuid4().hex}"}], stream=True
    )
    for chunk in stream:
        if chunk.choices and chunk.choices[0].delta.content:
            elapsed = time.perf_counter() - started
            stream.close()
            return elapsed
    raise RuntimeError("no content")


def _ttft(args: argparse.Namespace, root: Path) -> dict[str, Any]:
    samples: dict[str, list[float]] = {"jobs_api": [], "openai": []}
    with _stack(root / "ttft", idle_grace_s=600.0) as stack:
        headers = {"Authorization": f"Bearer {stack.api_key}"}
        with (
            httpx.Client(timeout=60, headers=headers) as http,
            openai.OpenAI(base_url=stack.url + "/v1", api_key=stack.api_key) as sdk,
        ):
            _jobs_api_ttft(stack, http)  # the cold start, not measured
            for _ in range(args.rounds):
                samples["jobs_api"].append(_jobs_api_ttft(stack, http))
                samples["openai"].append(_openai_ttft(sdk))
    out: dict[str, Any] = {path: {"p50_ms": _ms(v, 50), "p95_ms": _ms(v, 95)} for path, v in samples.items()}
    out["openai_x_jobs_api_p50"] = ratio(out["openai"]["p50_ms"], out["jobs_api"]["p50_ms"])
    return out


def _ms(values: list[float], q: float) -> float | None:
    found = percentile(values, q)
    return None if found is None else found * 1000


def _poll(url: str, key: str, stop: threading.Event, seen: list[float]) -> None:
    with httpx.Client(timeout=60, headers={"Authorization": f"Bearer {key}"}) as http:
        while not stop.wait(0.1):
            started = time.perf_counter()
            http.get(url + "/v1/models")
            seen.append(time.perf_counter() - started)


def _held_row(stack: DevStack, n: int) -> dict[str, Any]:
    latencies: list[float] = []
    stop = threading.Event()
    poller = threading.Thread(target=_poll, args=(stack.url, stack.api_key, stop, latencies))

    def one(i: int) -> int:
        body = {"model": MODEL, "messages": [{"role": "user", "content": f"held {uuid.uuid4().hex} {i}"}]}
        answer = httpx.post(
            stack.url + "/v1/chat/completions",
            json=body | {"max_tokens": 4},
            headers={"Authorization": f"Bearer {stack.api_key}"},
            timeout=120,
        )
        return answer.status_code

    poller.start()
    started = time.monotonic()
    with ThreadPoolExecutor(n) as pool:
        codes = list(pool.map(one, range(n)))
    stop.set()
    poller.join()
    return {
        "held": n,
        "ok": codes.count(200),
        "refused_503": codes.count(503),
        "seconds": time.monotonic() - started,
        "models_p50_ms": _ms(latencies, 50),
        "models_max_ms": max(latencies) * 1000 if latencies else None,
    }


def _held(args: argparse.Namespace, root: Path, deadline: float) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    for n in args.held:
        if rows and time.monotonic() > deadline:
            break
        stack = _stack(
            root / f"held-{n}",
            load_delay_s=args.cold_s,
            idle_grace_s=0.5,
            extra_env={"WORKERS": "1", "THREADS": str(THREADS)},
            overrides={"openai_max_held": 10_000, "openai_hold_s": args.cold_s + 30},
        )
        with stack:
            rows.append(_held_row(stack, n))
    return rows


def main(argv: list[str] | None = None) -> int:
    args = _parse(argv)
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="gpuq-bench-openai-") as tmp:
        ttft = _ttft(args, Path(tmp))
        held = _held(args, Path(tmp), started + args.max_s)
    print("## Time to first token on a warm box\n")
    print(
        markdown_table(
            ["path", "p50 ms", "p95 ms"],
            [[p, fmt(ttft[p]["p50_ms"], 1), fmt(ttft[p]["p95_ms"], 1)] for p in ("jobs_api", "openai")],
        )
    )
    print(f"\nOpenAI route / jobs API (p50): {fmt(ttft['openai_x_jobs_api_p50'])}x\n")
    print(f"## Held requests on one functions process ({THREADS} threads), cold start {args.cold_s:g} s\n")
    headers = ["held", "answered 200", "503", "seconds", "GET /v1/models p50 ms", "max ms"]
    rows = [
        [
            str(r["held"]),
            str(r["ok"]),
            str(r["refused_503"]),
            fmt(r["seconds"], 1),
            fmt(r["models_p50_ms"], 1),
            fmt(r["models_max_ms"], 0),
        ]
        for r in held
    ]
    print(markdown_table(headers, rows))
    targets = [Target("OpenAI TTFT / jobs API TTFT (p50, warm)", ttft["openai_x_jobs_api_p50"], 1.5, "x")]
    within = [r for r in held if r["held"] <= THREADS - 8]
    if within:
        targets.append(
            Target(f"GET /v1/models p50 with {within[-1]['held']} held", within[-1]["models_p50_ms"], 100.0, "ms")
        )
    print("\n## Targets\n")
    print(targets_table(targets))
    write_results(
        args.results_dir,
        "openai_front",
        {
            "settings": vars(args) | {"results_dir": str(args.results_dir), "threads": THREADS},
            "ttft": ttft,
            "held": held,
            "targets": [t.as_dict() for t in targets],
            "duration_s": time.monotonic() - started,
        },
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
