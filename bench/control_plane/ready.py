"""3 and 5. Agent ready -> first waiting job running: cold starts, timed from the agent's own log lines."""

from __future__ import annotations

import random
import statistics
import time
import uuid
from typing import Any

from bench.control_plane.constants import INSTANCE, JITTER_S, MODEL, SHORT, log
from bench.control_plane.stacks import stop_box
from bench.control_plane.stats import ms_summary, x1000
from bench.control_plane.timestamps import first_at, log_times
from bench.report import percentile
from shared.tools.client import JobsClient
from shared.tools.devstack import DevStack

__all__ = ["bench_ready_to_running"]


def bench_ready_to_running(
    stack: DevStack, client: JobsClient, cycles: int, label: str, rng: random.Random
) -> dict[str, Any]:
    log(f"agent ready -> job running, {label}: {cycles} cold starts")
    agent_log = stack.log_dir / f"agent-{INSTANCE}.log"
    samples, boots, failures, announced = [], [], 0, 0
    for _ in range(cycles):
        stop_box(stack)
        offset = agent_log.stat().st_size if agent_log.exists() else 0
        time.sleep(rng.uniform(0.0, JITTER_S))
        t_submit = time.time()
        job = client.submit({"model": MODEL, "prompt": f"cycle {uuid.uuid4()}", "options": SHORT})
        done = client.wait(job["id"], timeout_s=60, poll_s=0.05)
        lines = log_times(agent_log, offset)
        ready = first_at(lines, "ready: models")
        accepted = first_at(lines, f"job {job['id']} attempt 1 accepted")
        if done["status"] != "succeeded" or ready is None or accepted is None:
            failures += 1
            continue
        samples.append(accepted - ready)
        boots.append(ready - t_submit)
        announced += first_at(lines, "announced ready") is not None
    return {
        "variant": label,
        "cycles": cycles,
        "failures": failures,
        "announced": announced,
        "ready_to_running": ms_summary(samples),
        "mean_ms": x1000(statistics.fmean(samples)) if samples else None,
        "submit_to_ready_p50_ms": x1000(percentile(boots, 50)),
    }
