"""2. Warm enqueue -> first token: jobs one at a time through the public API, beside the model's own first token."""

from __future__ import annotations

import asyncio
import json
import random
import statistics
import time
import uuid
from typing import Any

from bench.control_plane.constants import INSTANCE, JITTER_S, MODEL, SHORT, log
from bench.control_plane.stats import ms_summary, x1000
from bench.control_plane.timestamps import first_at, iso_epoch, log_times
from bench.ndjson_client import build_request, stream
from bench.report import percentile
from shared.tools.client import JobsClient
from shared.tools.devstack import DevStack

__all__ = ["bench_warm_first_token", "model_ttft"]


def model_ttft(stack: DevStack, n: int) -> list[float]:
    """The stand-in's own time to first token (direct, the same short generation the jobs ask for)."""
    host, port = stack.ollama_url.removeprefix("http://").rsplit(":", 1)

    async def run() -> list[float]:
        out = []
        for i in range(n):
            body = json.dumps(
                {"model": MODEL, "prompt": f"direct {i}", "stream": True, "keep_alive": -1, "options": SHORT}
            ).encode()
            res = await stream(host, int(port), build_request(host, int(port), "/api/generate", body))
            if res.ok and res.ttfc_s is not None:
                out.append(res.ttfc_s)
        return out

    return asyncio.run(run())


def bench_warm_first_token(stack: DevStack, client: JobsClient, n: int, rng: random.Random) -> dict[str, Any]:
    log("cold start (not counted)")
    t0 = time.time()
    first = client.submit({"model": MODEL, "prompt": f"cold {uuid.uuid4()}", "options": SHORT})
    cold = client.wait(first["id"], timeout_s=120, poll_s=0.05)
    if cold["status"] != "succeeded":
        raise RuntimeError(f"cold-start job ended {cold['status']}: {cold.get('error')}")
    cold_s = time.time() - t0
    log(f"warm enqueue -> first token: {n} jobs one at a time")
    agent_log = stack.log_dir / f"agent-{INSTANCE}.log"
    totals, enqueue, to_agent, agent_to_started, started_to_client = [], [], [], [], []
    failures = 0
    for i in range(n):
        time.sleep(rng.uniform(0.0, JITTER_S))
        t_submit = time.time()
        job = client.submit({"model": MODEL, "prompt": f"warm {i} {uuid.uuid4()}", "options": SHORT})
        t_accepted_api = time.time()
        t_first = None
        for event in client.stream(job["id"]):
            if event.event == "output" and t_first is None:
                t_first = time.time()
            if event.event == "done":
                break
        if t_first is None:
            failures += 1
            continue
        totals.append(t_first - t_submit)
        enqueue.append(t_accepted_api - t_submit)
        accepted = first_at(log_times(agent_log), f"job {job['id']} attempt 1 accepted")
        started = iso_epoch(client.get(job["id"]).get("started_at"))
        if accepted is not None and started is not None:
            to_agent.append(accepted - t_submit)
            agent_to_started.append(started - accepted)
            started_to_client.append(t_first - started)
    model = model_ttft(stack, max(5, n // 2))
    model_p50 = percentile(model, 50) or 0.0
    overhead = [t - model_p50 for t in totals]
    return {
        "jobs": n,
        "failures": failures,
        "cold_start_enqueue_to_done_s": cold_s,
        "enqueue_to_first_token": ms_summary(totals),
        "model_ttft": ms_summary(model),
        "overhead": ms_summary(overhead) | {"mean_ms": x1000(statistics.fmean(overhead)) if overhead else None},
        "overhead_samples_ms": [round(x * 1000, 2) for x in overhead],
        "breakdown_p50_ms": {
            "POST /v1/jobs (202)": x1000(percentile(enqueue, 50)),
            "submit -> agent accepted (queue + dispatch + hand-over)": x1000(percentile(to_agent, 50)),
            "agent accepted -> 'started' report applied": x1000(percentile(agent_to_started, 50)),
            "started -> first output at the client (token, report, SSE poll)": x1000(percentile(started_to_client, 50)),
        },
    }
