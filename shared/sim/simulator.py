"""Trace-driven simulator of one GPU box under an idle policy, on a virtual clock (no sleeping).

``gpuq simulate --trace FILE [--thin P --stretch K --seed N] --policy NAME --cold-start S --price DPH
[--wait-value V] [--tokens-per-s R] [--prefill-tokens-per-s F] [--compare] [--json]``
(also ``python -m shared.sim.simulator ...``). With ``--max-boxes N [--jobs-per-box S --min-boxes M]`` it
simulates a pool of boxes under the fleet's scale rule instead (:mod:`shared.sim.fleet`).

Model
-----
* **One box, FIFO, one job at a time.** A job's service time is
  ``generated_tokens / tokens_per_s + context_tokens / prefill_tokens_per_s`` (defaults 50 tok/s decode and
  4,000 tok/s prefill; ``--prefill-tokens-per-s 0`` drops the prompt term).
* **The box starts stopped.** The first job triggers a cold start under every policy (no idle decision has
  been made yet) and the offline reference pays ``B`` for it too. It is counted, not dropped: it is what a
  team sees after every quiet night.
* **Cold start.** A job arriving at a stopped box starts it: ``C = cold_start`` seconds are billed before the
  model can serve, and the jobs queued meanwhile wait. Billing runs from the start request to the stop.
* **Idle moments.** When a job finishes and no job is queued, the policy object (the very objects of
  ``shared.money.idle``, built by ``make_policy``) is asked ``keep_warm_s()``; if the next job arrives within that
  time the box serves it at once, otherwise the box stopped at ``idle + T``. Either way the policy is then
  told ``observe_gap(arrival - idle moment)`` -- the full gap, as the control plane would report it. After
  the last job the box idles its ``T`` and stops (that tail is billed).
* **Waiting** of a job = its service start minus the start it would have had on an always-warm box (so
  ordinary queueing behind other jobs, which no idle policy can avoid, is not counted; only the delay caused
  by cold starts is, including the knock-on delay of jobs queued behind a cold start). "Delayed" means a
  wait above 1 microsecond. ``p50/p95/max`` are nearest-rank percentiles over *all* jobs.

Cost model (the one of ``shared.money.idle``)
---------------------------------------
In GPU-second equivalents: ``cost = billed_s + (w / p) * sum(waits)``, ``w`` = ``--wait-value`` ($ per hour
of one job waiting), ``p`` = ``--price``; dollars are ``cost * p / 3600``. ``B = C (1 + w / p)``.

Offline reference ("optimum")
-----------------------------
Computed on the always-warm schedule (busy periods and the idle gaps ``g`` between them): a clairvoyant that
pays ``min(g, B)`` per gap -- stays warm through ``g <= B``, otherwise stops at once and is back exactly when
needed -- plus the first cold start ``B`` and the busy time, and no tail (it knows no job follows).
``optimum_gpu_hours`` is its billed time (``C`` per stop, the rest of ``B`` being the valued wait of the job
that triggers the restart, as in ski rental); ``cost_ratio`` = policy cost / reference cost, both in the same
units. When ``w = 0`` this is exactly the billed time of the just-in-time pre-warming schedule (``min(g, C)``
per gap, nobody waits).
``prewarm_gpu_hours`` / ``prewarm_cost_ratio`` (extra JSON keys) always give that pre-warming floor.

Two caveats, both visible only on real (bursty) traces:

1. The reference charges a stop one job's wait (that is what makes ``B`` the break-even point), while the
   simulation charges every job delayed by a cold start. With ``w > 0`` a burst arriving at a stopped box
   (the very first start included) costs more than ``B``, and can push a policy past its ski-rental bound
   (break-even 2, randomized e/(e-1)); the bounds hold on any trace whose cold starts delay one job each.
   ``delayed_jobs / cold_starts`` in the output tells how bursty the restarts were.
2. With ``w = 0`` waiting is free, so the gaps absorbed by the backlog of a cold start cost nothing: stopping
   at once batches jobs behind boots, and ``immediate`` never costs more than the reference (every job
   waits, though). With ``w = 0`` break-even stays within 2x of the reference on any trace.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Final, TextIO

from shared.money.idle import POLICY_NAMES, IdlePolicy, IdlePolicyConfig, PolicyName, make_policy
from shared.sim.fleet import add_fleet_arguments, run_fleet_cli
from shared.sim.trace import TraceRequest, load_trace

__all__ = [
    "DEFAULT_SEED",
    "JSON_KEYS",
    "ServiceModel",
    "SimulationResult",
    "compare",
    "format_result",
    "format_table",
    "gap_game",
    "main",
    "simulate",
]

DEFAULT_SEED: Final[int] = 0
DELAY_EPS_S: Final[float] = 1e-6
#: Keys every JSON line carries (more follow).
JSON_KEYS: Final[tuple[str, ...]] = (
    "policy",
    "billed_gpu_hours",
    "optimum_gpu_hours",
    "cost_ratio",
    "cold_starts",
    "delayed_fraction",
    "p50_wait_s",
    "p95_wait_s",
    "max_wait_s",
)


@dataclass(frozen=True, slots=True)
class ServiceModel:
    """Service time of a job: decode at ``tokens_per_s`` plus prefill at ``prefill_tokens_per_s`` (0: none)."""

    tokens_per_s: float = 50.0
    prefill_tokens_per_s: float = 4000.0

    def __post_init__(self) -> None:
        if not (math.isfinite(self.tokens_per_s) and self.tokens_per_s > 0):
            raise ValueError(f"tokens_per_s must be a positive finite number, got {self.tokens_per_s!r}")
        if not (math.isfinite(self.prefill_tokens_per_s) and self.prefill_tokens_per_s >= 0):
            raise ValueError(f"prefill_tokens_per_s must be finite and >= 0, got {self.prefill_tokens_per_s!r}")

    def service_s(self, req: TraceRequest) -> float:
        decode = req.generated_tokens / self.tokens_per_s
        if self.prefill_tokens_per_s == 0:
            return decode
        return decode + req.context_tokens / self.prefill_tokens_per_s


@dataclass(frozen=True, slots=True)
class SimulationResult:
    """Outcome of one policy on one trace. Hours are GPU-hours; costs in $; waits in seconds."""

    policy: str
    billed_gpu_hours: float
    optimum_gpu_hours: float
    cost_ratio: float
    cold_starts: int
    delayed_fraction: float
    p50_wait_s: float
    p95_wait_s: float
    max_wait_s: float
    jobs: int
    mean_wait_s: float
    delayed_jobs: int
    cost_usd: float
    billed_usd: float
    wait_cost_usd: float
    optimum_cost_usd: float
    prewarm_gpu_hours: float
    prewarm_cost_ratio: float
    busy_gpu_hours: float
    span_hours: float
    horizon_s: float
    cold_start_s: float
    price_per_hour: float
    wait_value_per_hour: float

    def to_dict(self) -> dict[str, Any]:
        """All fields; the ``JSON_KEYS`` come first."""
        return asdict(self)


def _nearest_rank(sorted_values: Sequence[float], q: float) -> float:
    if not sorted_values:
        return 0.0
    rank = max(1, math.ceil(q * len(sorted_values)))
    return sorted_values[rank - 1]


def simulate(
    requests: Sequence[TraceRequest],
    config: IdlePolicyConfig,
    *,
    service: ServiceModel | None = None,
    seed: int = DEFAULT_SEED,
    policy: IdlePolicy | None = None,
) -> SimulationResult:
    """Replay ``requests`` (sorted by offset) through ``policy`` (default ``make_policy(config, rng_seed=seed)``).

    The cost model (``cold_start_s``, ``price_per_hour``, ``wait_value_per_hour``) comes from ``config``; the
    cold start it charges is ``config.cold_start_s``. Deterministic for a given seed.
    """
    svc = service if service is not None else ServiceModel()
    pol = policy if policy is not None else make_policy(config, rng_seed=seed)
    arrivals = [r.offset_s for r in requests]
    services = [svc.service_s(r) for r in requests]
    if any(arrivals[i] > arrivals[i + 1] for i in range(len(arrivals) - 1)):
        raise ValueError("requests must be sorted by offset_s")
    warm_start, gaps = _always_warm(arrivals, services)
    billed, cold_starts, waits = _replay(arrivals, services, warm_start, pol, config.cold_start_s)
    return _result(config, pol.name, arrivals, services, gaps, billed, cold_starts, waits)


def _always_warm(arrivals: Sequence[float], services: Sequence[float]) -> tuple[list[float], list[float]]:
    """The always-warm schedule: when each job's service starts, and the idle gaps between busy periods."""
    warm_start = [0.0] * len(arrivals)
    gaps: list[float] = []
    warm_free = -math.inf
    for i, a in enumerate(arrivals):
        if a > warm_free:
            if i:
                gaps.append(a - warm_free)
            start = a
        else:
            start = warm_free
        warm_start[i] = start
        warm_free = start + services[i]
    return warm_start, gaps


def _replay(
    arrivals: Sequence[float], services: Sequence[float], warm_start: Sequence[float], pol: IdlePolicy, c: float
) -> tuple[float, int, list[float]]:
    """The policy on the virtual clock: billed GPU-seconds, cold starts, and each job's extra wait."""
    n = len(arrivals)
    billed = 0.0
    cold_starts = 0
    waits = [0.0] * n
    up_since = 0.0  # billing start of the current up period
    free_at = 0.0  # when the box finishes its backlog
    idle_since = 0.0
    keep = 0.0
    idle = False  # the box went idle at idle_since and will stop at idle_since + keep
    for i, a in enumerate(arrivals):
        if i == 0 or (idle and a - idle_since > keep):
            if i:
                billed += keep + idle_since - up_since
                pol.observe_gap(a - idle_since)
            cold_starts += 1
            up_since = a
            start = a + c
        elif idle:
            pol.observe_gap(a - idle_since)
            start = a
        else:
            start = max(free_at, a)
        free_at = start + services[i]
        waits[i] = start - warm_start[i]
        idle = not (i + 1 < n and arrivals[i + 1] <= free_at)
        if idle:
            idle_since = free_at
            keep = pol.keep_warm_s()
    if n:
        billed += idle_since + keep - up_since  # the tail after the last job
    return billed, cold_starts, waits


def _result(
    config: IdlePolicyConfig,
    name: str,
    arrivals: Sequence[float],
    services: Sequence[float],
    gaps: Sequence[float],
    billed: float,
    cold_starts: int,
    waits: Sequence[float],
) -> SimulationResult:
    c, b, n = config.cold_start_s, config.horizon_s(), len(arrivals)
    wait_rate = config.wait_value_per_hour / config.price_per_hour  # GPU-seconds per second of one job waiting
    busy = math.fsum(services)
    total_wait = math.fsum(waits)
    cost = billed + wait_rate * total_wait
    opt_billed = opt_cost = prewarm = 0.0
    if n:
        stops = sum(1 for g in gaps if g > b)
        opt_billed = c + busy + math.fsum(g if g <= b else c for g in gaps)
        opt_cost = opt_billed + wait_rate * c * (1 + stops)
        prewarm = c + busy + math.fsum(min(g, c) for g in gaps)
    waits_sorted = sorted(waits)
    delayed = sum(1 for w in waits if w > DELAY_EPS_S)
    usd = config.price_per_hour / 3600.0
    return SimulationResult(
        policy=name,
        jobs=n,
        billed_gpu_hours=billed / 3600.0,
        optimum_gpu_hours=opt_billed / 3600.0,
        cost_ratio=cost / opt_cost if opt_cost > 0 else 1.0,
        cold_starts=cold_starts,
        delayed_fraction=delayed / n if n else 0.0,
        p50_wait_s=_nearest_rank(waits_sorted, 0.50),
        p95_wait_s=_nearest_rank(waits_sorted, 0.95),
        max_wait_s=waits_sorted[-1] if n else 0.0,
        mean_wait_s=total_wait / n if n else 0.0,
        delayed_jobs=delayed,
        cost_usd=cost * usd,
        billed_usd=billed * usd,
        wait_cost_usd=wait_rate * total_wait * usd,
        optimum_cost_usd=opt_cost * usd,
        prewarm_gpu_hours=prewarm / 3600.0,
        prewarm_cost_ratio=cost / prewarm if prewarm > 0 else 1.0,
        busy_gpu_hours=busy / 3600.0,
        span_hours=(arrivals[-1] - arrivals[0]) / 3600.0 if n else 0.0,
        horizon_s=b,
        cold_start_s=c,
        price_per_hour=config.price_per_hour,
        wait_value_per_hour=config.wait_value_per_hour,
    )


def compare(
    requests: Sequence[TraceRequest],
    config: IdlePolicyConfig,
    *,
    service: ServiceModel | None = None,
    seed: int = DEFAULT_SEED,
    policies: Iterable[PolicyName] = POLICY_NAMES,
) -> list[SimulationResult]:
    """``simulate`` once per policy (``config`` with ``policy`` replaced), in the given order."""
    return [
        simulate(requests, config.model_copy(update={"policy": name}), service=service, seed=seed) for name in policies
    ]


def gap_game(policy: IdlePolicy, gaps: Iterable[float], *, stop_cost_s: float | None = None) -> tuple[float, float]:
    """The abstract ski-rental game behind the bounds: ``(online cost, offline optimum)`` over a gap sequence.

    Per gap ``g``: ``T = policy.keep_warm_s()``; online pays ``g`` if ``g <= T`` else ``T + B``; the optimum
    pays ``min(g, B)``; then ``policy.observe_gap(g)``. ``B`` = ``stop_cost_s`` or ``policy.horizon_s()``.
    No first start, no tail, no service: each gap is one job arriving at an idle box.
    """
    b = policy.horizon_s() if stop_cost_s is None else stop_cost_s
    online = offline = 0.0
    for g in gaps:
        t = policy.keep_warm_s()
        online += g if g <= t else t + b
        offline += min(g, b)
        policy.observe_gap(g)
    return online, offline


# ---------------------------------------------------------------------------------------------- CLI output


def _json_line(result: SimulationResult, extra: dict[str, Any]) -> str:
    return json.dumps({**result.to_dict(), **extra}, sort_keys=False)


def format_result(result: SimulationResult) -> str:
    """A readable block for one policy."""
    rows = [
        ("policy", result.policy),
        ("jobs", f"{result.jobs}"),
        ("billed GPU-hours", f"{result.billed_gpu_hours:.3f}  (${result.billed_usd:.2f})"),
        ("total cost", f"${result.cost_usd:.2f}  (incl. waiting ${result.wait_cost_usd:.2f})"),
        ("offline optimum", f"{result.optimum_gpu_hours:.3f} GPU-h  (${result.optimum_cost_usd:.2f})"),
        ("cost ratio", f"{result.cost_ratio:.3f}"),
        ("pre-warm floor", f"{result.prewarm_gpu_hours:.3f} GPU-h  (ratio {result.prewarm_cost_ratio:.3f})"),
        ("cold starts", f"{result.cold_starts}"),
        ("jobs delayed", f"{100 * result.delayed_fraction:.1f} %"),
        (
            "wait p50/p95/max",
            f"{result.p50_wait_s:.1f} / {result.p95_wait_s:.1f} / {result.max_wait_s:.1f} s",
        ),
    ]
    width = max(len(k) for k, _ in rows)
    return "\n".join(f"{k.ljust(width)}  {v}" for k, v in rows)


_TABLE_COLUMNS: Final[tuple[tuple[str, str], ...]] = (
    ("policy", "<"),
    ("GPU-h", ">"),
    ("cost $", ">"),
    ("opt GPU-h", ">"),
    ("ratio", ">"),
    ("cold starts", ">"),
    ("delayed", ">"),
    ("p50 wait", ">"),
    ("p95 wait", ">"),
    ("max wait", ">"),
)


def _table_cells(r: SimulationResult) -> list[str]:
    return [
        r.policy,
        f"{r.billed_gpu_hours:.3f}",
        f"{r.cost_usd:.2f}",
        f"{r.optimum_gpu_hours:.3f}",
        f"{r.cost_ratio:.3f}",
        f"{r.cold_starts}",
        f"{100 * r.delayed_fraction:.1f}%",
        f"{r.p50_wait_s:.1f}s",
        f"{r.p95_wait_s:.1f}s",
        f"{r.max_wait_s:.1f}s",
    ]


def format_table(results: Sequence[SimulationResult], *, markdown: bool = False) -> str:
    """One aligned row per policy (``markdown=True``: a GitHub table)."""
    header = [name for name, _ in _TABLE_COLUMNS]
    body = [_table_cells(r) for r in results]
    widths = [max(len(row[j]) for row in [header, *body]) for j in range(len(header))]

    def fmt(row: list[str]) -> str:
        cells = [
            cell.ljust(w) if align == "<" else cell.rjust(w)
            for cell, w, (_, align) in zip(row, widths, _TABLE_COLUMNS, strict=True)
        ]
        return ("| " + " | ".join(cells) + " |") if markdown else "  ".join(cells)

    lines = [fmt(header)]
    if markdown:
        rule = [
            ("-" * (w - 1) + ":") if align == ">" else "-" * w
            for w, (_, align) in zip(widths, _TABLE_COLUMNS, strict=True)
        ]
        lines.append("| " + " | ".join(rule) + " |")
    else:
        lines.append("  ".join("-" * w for w in widths))
    lines.extend(fmt(row) for row in body)
    return "\n".join(lines)


def _describe(args: argparse.Namespace, requests: Sequence[TraceRequest], config: IdlePolicyConfig) -> str:
    span_h = (requests[-1].offset_s - requests[0].offset_s) / 3600.0
    return (
        f"trace {args.trace}: thin P={args.thin:g}, stretch K={args.stretch:g}, seed {args.seed} -> "
        f"{len(requests)} jobs over {span_h:.2f} h\n"
        f"cold start C={config.cold_start_s:g} s, price p=${config.price_per_hour:g}/h, "
        f"wait value w=${config.wait_value_per_hour:g}/h -> break-even horizon B={config.horizon_s():.1f} s; "
        f"service {args.tokens_per_s:g} tok/s decode + "
        f"{args.prefill_tokens_per_s:g} tok/s prefill"
    )


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="gpuq simulate",
        description="Replay a request trace through the idle policies on a virtual clock "
        "(one GPU box, FIFO) and compare the cost with the offline optimum.",
    )
    p.add_argument("--trace", required=True, type=Path, help="request-trace CSV (Azure LLM inference format)")
    p.add_argument("--thin", type=float, default=1.0, help="keep each request with probability P (default 1)")
    p.add_argument("--stretch", type=float, default=1.0, help="multiply time offsets by K (default 1)")
    p.add_argument("--seed", type=int, default=DEFAULT_SEED, help="seed for thinning and the randomized policy")
    p.add_argument("--policy", choices=POLICY_NAMES, default="break-even", help="idle policy (default break-even)")
    p.add_argument("--cold-start", type=float, default=120.0, help="cold start S seconds, billed (default 120)")
    p.add_argument("--price", type=float, default=0.5, help="GPU price $/h (default 0.5)")
    p.add_argument("--wait-value", type=float, default=0.0, help="$ value of one hour of one job waiting (default 0)")
    p.add_argument("--tokens-per-s", type=float, default=50.0, help="decode rate, tokens/s (default 50)")
    p.add_argument(
        "--prefill-tokens-per-s",
        type=float,
        default=4000.0,
        help="prefill rate for context tokens, tokens/s; 0 ignores the prompt (default 4000)",
    )
    p.add_argument("--fixed-keep-warm", type=float, default=300.0, help="keep-warm of 'fixed', s (default 300)")
    p.add_argument("--max-keep-warm", type=float, default=3600.0, help="clamp on every keep-warm, s (default 3600)")
    p.add_argument("--adaptive-window", type=int, default=64, help="gaps remembered by 'adaptive' (default 64)")
    p.add_argument("--compare", action="store_true", help="run every policy, one row each")
    p.add_argument("--json", action="store_true", help="JSON lines instead of text")
    add_fleet_arguments(p)
    return p


def _run(args: argparse.Namespace, out: TextIO) -> int:
    config = IdlePolicyConfig(
        policy=args.policy,
        fixed_keep_warm_s=args.fixed_keep_warm,
        cold_start_s=args.cold_start,
        price_per_hour=args.price,
        wait_value_per_hour=args.wait_value,
        max_keep_warm_s=args.max_keep_warm,
        adaptive_window=args.adaptive_window,
        adaptive_min_history=min(8, args.adaptive_window),
    )
    service = ServiceModel(tokens_per_s=args.tokens_per_s, prefill_tokens_per_s=args.prefill_tokens_per_s)
    requests = load_trace(args.trace, thin=args.thin, stretch=args.stretch, seed=args.seed)
    if not requests:
        raise ValueError(f"no requests left in {args.trace} (thin={args.thin:g})")
    if args.max_boxes:
        return run_fleet_cli(args, requests, config, [service.service_s(r) for r in requests], out)
    names: tuple[PolicyName, ...] = POLICY_NAMES if args.compare else (args.policy,)
    results = compare(requests, config, service=service, seed=args.seed, policies=names)
    if args.json:
        extra = {"thin": args.thin, "stretch": args.stretch, "seed": args.seed}
        for r in results:
            print(_json_line(r, extra), file=out)
    elif args.compare:
        print(_describe(args, requests, config), file=out)
        print(file=out)
        print(format_table(results), file=out)
    else:
        print(_describe(args, requests, config), file=out)
        print(file=out)
        print(format_result(results[0]), file=out)
    return 0


def main(argv: list[str] | None = None) -> int:
    """``gpuq simulate``: 0 on success, 1 on a bad trace or parameter, 2 on bad usage."""
    parser = _parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # --help or a usage error; the parser already printed
        return exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 2)
    try:
        return _run(args, sys.stdout)
    except (OSError, ValueError) as exc:
        print(f"gpuq simulate: error: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    raise SystemExit(main())
