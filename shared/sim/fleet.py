"""Trace-driven simulation of a pool of boxes on a virtual clock: the fleet's scale rule, no sleeping.

``gpuq simulate --trace FILE --max-boxes N [--jobs-per-box S] [--min-boxes M] [--compare]``

Model (the control plane's own rules, from :mod:`shared.boxes.scaling` and :mod:`shared.money.idle`):

* A pool of up to ``max_boxes`` boxes, each running ``jobs_per_box`` jobs at once, each job at the
  single-job service rate of :class:`~shared.sim.simulator.ServiceModel` (the slots do not slow each
  other: an upper bound on what batching gives).
* **Up.** At every arrival and every finish the pool asks :func:`~shared.boxes.scaling.decide_target`
  with the expected work of the queued and running jobs; the boxes it wants beyond those up or starting
  are started, each ``cold_start`` seconds from ready, billed from the start request.
* **Placement.** A waiting job goes (FIFO) to the ready box with a free slot that has the fewest jobs.
* **Down.** A box with nothing to run asks its own idle policy (``make_policy``) for ``keep_warm_s()`` and
  stops that long after it went idle unless work comes; ``min_boxes`` stay up. A job placed on an idle box
  tells the policy the gap.
* **Wait** of a job = its service start minus its arrival (the ideal, infinitely many warm boxes, is 0).
  ``makespan_s`` = the last finish minus the first arrival.
"""

from __future__ import annotations

import argparse
import heapq
import json
import math
from collections import deque
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, TextIO

from shared.boxes.scaling import decide_target
from shared.money.idle import IdlePolicy, IdlePolicyConfig, make_policy
from shared.sim.trace import TraceRequest

__all__ = ["FleetConfig", "FleetResult", "add_fleet_arguments", "run_fleet_cli", "simulate_fleet"]

_ARRIVE, _READY, _FINISH, _STOP = 0, 1, 2, 3  # event kinds; the pool decides once all of an instant is in


@dataclass(frozen=True, slots=True)
class FleetConfig:
    max_boxes: int = 1
    jobs_per_box: int = 1
    min_boxes: int = 0


@dataclass(frozen=True, slots=True)
class FleetResult:
    max_boxes: int
    jobs_per_box: int
    min_boxes: int
    jobs: int
    boxes_started: int
    cold_starts: int
    billed_gpu_hours: float
    cost_usd: float
    p50_wait_s: float
    p95_wait_s: float
    max_wait_s: float
    mean_wait_s: float
    makespan_s: float

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(slots=True)
class _Box:
    index: int
    policy: IdlePolicy
    state: str = "stopped"  # stopped | starting | up
    up_since: float = 0.0
    running: int = 0
    idle_since: float | None = None
    stop_token: int = 0  # bumps whenever a scheduled stop is cancelled
    started: int = 0


@dataclass
class _Fleet:
    """The simulation's state: boxes, the FIFO queue, the event heap, the remaining work of running jobs."""

    config: FleetConfig
    idle: IdlePolicyConfig
    services: Sequence[float]
    boxes: list[_Box]
    events: list[tuple[float, int, int, int]] = field(default_factory=list)  # (time, kind, a, b)
    queue: deque[int] = field(default_factory=deque)
    ends: dict[int, float] = field(default_factory=dict)  # running job -> its finish time
    starts: list[float] = field(default_factory=list)
    billed_s: float = 0.0

    def push(self, at: float, kind: int, a: int, b: int = 0) -> None:
        heapq.heappush(self.events, (at, kind, a, b))

    def scale(self, now: float) -> None:
        active = [b for b in self.boxes if b.state != "stopped"]
        work = sum(self.services[j] for j in self.queue) + sum(end - now for end in self.ends.values())
        decision = decide_target(
            queued_work_s=work,
            active=len(active),
            slots_per_box=self.config.jobs_per_box,
            cold_start_s=self.idle.cold_start_s,
            max_boxes=self.config.max_boxes,
            min_boxes=self.config.min_boxes,
            jobs=len(self.queue) + len(self.ends),
        )
        for box in [b for b in self.boxes if b.state == "stopped"][: decision.start]:
            box.state, box.up_since, box.started = "starting", now, box.started + 1
            self.push(now + self.idle.cold_start_s, _READY, box.index)

    def place(self, now: float) -> None:
        while self.queue:
            ready = [b for b in self.boxes if b.state == "up" and b.running < self.config.jobs_per_box]
            if not ready:
                return
            box = min(ready, key=lambda b: (b.running, b.index))
            job = self.queue.popleft()
            if box.idle_since is not None:
                box.policy.observe_gap(now - box.idle_since)
                box.idle_since, box.stop_token = None, box.stop_token + 1
            box.running += 1
            self.starts[job] = now
            self.ends[job] = now + self.services[job]
            self.push(self.ends[job], _FINISH, box.index, job)

    def settle(self, now: float) -> None:
        """Boxes with nothing to run go idle and schedule their stop (never below ``min_boxes``)."""
        for box in self.boxes:
            if box.state == "up" and box.running == 0 and box.idle_since is None and not self.queue:
                box.idle_since = now
                self.push(now + box.policy.keep_warm_s(), _STOP, box.index, box.stop_token)

    def stop(self, now: float, box: _Box, token: int) -> None:
        keepers = sum(1 for b in self.boxes if b.state != "stopped") <= self.config.min_boxes
        if box.state != "up" or box.idle_since is None or token != box.stop_token or keepers:
            return
        self.billed_s += now - box.up_since
        box.state, box.idle_since = "stopped", None


def simulate_fleet(
    requests: Sequence[TraceRequest],
    idle: IdlePolicyConfig,
    fleet: FleetConfig,
    services: Sequence[float],
    *,
    seed: int = 0,
) -> FleetResult:
    """Replay ``requests`` (sorted by offset, ``services[i]`` seconds each) through the pool."""
    boxes = [_Box(i, make_policy(idle, rng_seed=seed + i)) for i in range(max(1, fleet.max_boxes))]
    sim = _Fleet(fleet, idle, services, boxes, starts=[math.nan] * len(requests))
    for i, req in enumerate(requests):
        sim.push(req.offset_s, _ARRIVE, i)
    now = 0.0
    sim.scale(now)  # the min_boxes keepers are up from the start
    while sim.events:
        now, kind, a, b = heapq.heappop(sim.events)
        if kind == _ARRIVE:
            sim.queue.append(a)
        elif kind == _READY:
            boxes[a].state = "up"
        elif kind == _FINISH:
            boxes[a].running -= 1
            del sim.ends[b]
        elif kind == _STOP:
            sim.stop(now, boxes[a], b)
            continue
        if sim.events and sim.events[0][0] == now and sim.events[0][1] <= _FINISH:
            continue  # decide once all that happens at this instant is in
        sim.place(now)
        sim.scale(now)
        sim.settle(now)
    for box in boxes:  # the min_boxes keepers are billed until the last event
        if box.state != "stopped":
            sim.billed_s += now - box.up_since
    return _result(requests, idle, fleet, sim, boxes)


def _result(
    requests: Sequence[TraceRequest], idle: IdlePolicyConfig, fleet: FleetConfig, sim: _Fleet, boxes: list[_Box]
) -> FleetResult:
    waits = sorted(start - req.offset_s for start, req in zip(sim.starts, requests, strict=True))
    finishes = [s + sim.services[i] for i, s in enumerate(sim.starts)]

    def rank(q: float) -> float:
        return waits[max(1, math.ceil(q * len(waits))) - 1] if waits else 0.0

    return FleetResult(
        max_boxes=fleet.max_boxes,
        jobs_per_box=fleet.jobs_per_box,
        min_boxes=fleet.min_boxes,
        jobs=len(requests),
        boxes_started=sum(1 for b in boxes if b.started),
        cold_starts=sum(b.started for b in boxes),
        billed_gpu_hours=sim.billed_s / 3600.0,
        cost_usd=sim.billed_s / 3600.0 * idle.price_per_hour,
        p50_wait_s=rank(0.50),
        p95_wait_s=rank(0.95),
        max_wait_s=waits[-1] if waits else 0.0,
        mean_wait_s=math.fsum(waits) / len(waits) if waits else 0.0,
        makespan_s=(max(finishes) - requests[0].offset_s) if requests else 0.0,
    )


# --- gpuq simulate --max-boxes ------------------------------------------------------------------
def add_fleet_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--max-boxes", type=int, default=0, help="simulate a pool of up to N boxes (the scale rule)")
    p.add_argument("--jobs-per-box", type=int, default=1, help="jobs a box runs at once, with --max-boxes (default 1)")
    p.add_argument("--min-boxes", type=int, default=0, help="boxes kept up, with --max-boxes (default 0)")


def _sizes(max_boxes: int) -> list[int]:
    sizes = [1]
    while sizes[-1] * 2 < max_boxes:
        sizes.append(sizes[-1] * 2)
    return sorted({*sizes, max_boxes})


def run_fleet_cli(
    args: argparse.Namespace,
    requests: Sequence[TraceRequest],
    idle: IdlePolicyConfig,
    services: Sequence[float],
    out: TextIO,
) -> int:
    """One row for ``--max-boxes N``; with ``--compare``, one per pool size 1, 2, 4 … N."""
    if args.max_boxes < 1 or args.jobs_per_box < 1 or not 0 <= args.min_boxes <= args.max_boxes:
        raise ValueError("need --max-boxes >= 1, --jobs-per-box >= 1 and 0 <= --min-boxes <= --max-boxes")
    sizes = _sizes(args.max_boxes) if args.compare else [args.max_boxes]
    results = [
        simulate_fleet(
            requests, idle, FleetConfig(n, args.jobs_per_box, min(args.min_boxes, n)), services, seed=args.seed
        )
        for n in sizes
    ]
    if args.json:
        for r in results:
            print(json.dumps(r.to_dict(), sort_keys=True), file=out)
        return 0
    print(
        f"{len(requests)} jobs, policy {idle.policy}, cold start {idle.cold_start_s:g} s, "
        f"{args.jobs_per_box} job(s) per box, min {args.min_boxes} box(es)\n",
        file=out,
    )
    head = ("max boxes", "started", "cold starts", "GPU-h", "cost $", "p50 wait s", "p95 wait s", "makespan s")
    rows = [
        (
            str(r.max_boxes),
            str(r.boxes_started),
            str(r.cold_starts),
            f"{r.billed_gpu_hours:.2f}",
            f"{r.cost_usd:.2f}",
            f"{r.p50_wait_s:.1f}",
            f"{r.p95_wait_s:.1f}",
            f"{r.makespan_s:.0f}",
        )
        for r in results
    ]
    widths = [max(len(row[i]) for row in (head, *rows)) for i in range(len(head))]
    for row in (head, *rows):
        print("  ".join(cell.rjust(w) for cell, w in zip(row, widths, strict=True)), file=out)
    return 0
