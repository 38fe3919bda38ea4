"""Plot cost ratio vs fraction of jobs delayed, per idle policy, on the shared trace -> ``docs/policies.png``
(and the dashboard's copy, ``shared/ui/static/policies.png``).

    PYTHONPATH=. python bench/plot_policies.py [--trace ../shared/traces/AzureLLMInferenceTrace_code_2023.csv]
        [--thin 0.02 --stretch 30 --seed 0 --cold-start 120 --price 0.5 --wait-values 0,2] [--out docs/policies.png]

One panel per wait value. Each policy is one point (seed ``--seed``); ``randomized`` is also shown over
``--seeds`` policy seeds (small dots: the spread of one run), and ``fixed`` is swept over keep-warm times
(the dashed line, labelled in seconds) to show the trade-off frontier the other policies sit on.
"""

from __future__ import annotations

import argparse
import shutil
import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt
from matplotlib.axes import Axes

from shared.money.idle import POLICY_NAMES, IdlePolicyConfig
from shared.sim.simulator import ServiceModel, SimulationResult, compare, simulate
from shared.sim.trace import TraceRequest, load_trace

REPO = Path(__file__).resolve().parents[1]
DEFAULT_TRACE = REPO.parent / "shared" / "traces" / "AzureLLMInferenceTrace_code_2023.csv"
UI_COPY = REPO / "shared" / "ui" / "static" / "policies.png"
FIXED_SWEEP_S = (0.0, 15.0, 30.0, 60.0, 120.0, 240.0, 480.0, 900.0, 1800.0, 3600.0)
COLORS = {
    "immediate": "tab:red",
    "fixed": "tab:gray",
    "break-even": "tab:blue",
    "randomized": "tab:orange",
    "adaptive": "tab:green",
}


def _panel(
    ax: Axes,
    requests: list[TraceRequest],
    config: IdlePolicyConfig,
    service: ServiceModel,
    seed: int,
    seeds: int,
) -> list[SimulationResult]:
    sweep = [
        simulate(requests, config.model_copy(update={"policy": "fixed", "fixed_keep_warm_s": t}), service=service)
        for t in FIXED_SWEEP_S
    ]
    ax.plot(
        [100 * r.delayed_fraction for r in sweep],
        [r.cost_ratio for r in sweep],
        "--",
        color="lightgray",
        zorder=1,
        label="fixed, swept",
    )
    for t, r in zip(FIXED_SWEEP_S, sweep, strict=True):
        ax.annotate(
            f"{t:g}s",
            (100 * r.delayed_fraction, r.cost_ratio),
            fontsize=7,
            color="gray",
            xytext=(3, 3),
            textcoords="offset points",
        )
    rnd_cfg = config.model_copy(update={"policy": "randomized"})
    cloud = [simulate(requests, rnd_cfg, service=service, seed=s) for s in range(seeds)]
    ax.scatter(
        [100 * r.delayed_fraction for r in cloud],
        [r.cost_ratio for r in cloud],
        s=8,
        color=COLORS["randomized"],
        alpha=0.35,
        zorder=2,
        label=f"randomized, {seeds} seeds",
    )
    results = compare(requests, config, service=service, seed=seed)
    for r in results:
        ax.scatter(
            [100 * r.delayed_fraction],
            [r.cost_ratio],
            s=70,
            color=COLORS[r.policy],
            edgecolor="black",
            zorder=3,
            label=r.policy,
        )
    ax.axhline(1.0, color="black", linewidth=0.6)
    ax.set_xlabel("jobs delayed by a cold start (%)")
    ax.set_ylabel("cost / offline reference")
    ax.set_title(
        f"waiting valued at ${config.wait_value_per_hour:g}/h per job  (B = {config.horizon_s():.0f} s)",
        fontsize=10,
    )
    ax.grid(True, alpha=0.3)
    return results


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    p.add_argument("--trace", type=Path, default=DEFAULT_TRACE)
    p.add_argument("--thin", type=float, default=0.02)
    p.add_argument("--stretch", type=float, default=30.0)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--seeds", type=int, default=40, help="policy seeds for the randomized cloud")
    p.add_argument("--cold-start", type=float, default=120.0)
    p.add_argument("--price", type=float, default=0.5)
    p.add_argument("--wait-values", default="0,2", help="comma-separated $/h, one panel each")
    p.add_argument("--out", type=Path, default=REPO / "docs" / "policies.png")
    args = p.parse_args(argv)

    requests = load_trace(args.trace, thin=args.thin, stretch=args.stretch, seed=args.seed)
    service = ServiceModel()
    waits = [float(w) for w in args.wait_values.split(",")]
    fig, axes = plt.subplots(1, len(waits), figsize=(6.2 * len(waits), 5.0), squeeze=False)
    for ax, w in zip(axes[0], waits, strict=True):
        config = IdlePolicyConfig(cold_start_s=args.cold_start, price_per_hour=args.price, wait_value_per_hour=w)
        results = _panel(ax, requests, config, service, args.seed, args.seeds)
        for r in results:
            print(f"w={w:g}  {r.policy:<10}  ratio {r.cost_ratio:.3f}  delayed {100 * r.delayed_fraction:.1f}%")
    handles, labels = axes[0][0].get_legend_handles_labels()
    order = [labels.index(n) for n in ("fixed, swept", *POLICY_NAMES, f"randomized, {args.seeds} seeds")]
    axes[0][0].legend([handles[i] for i in order], [labels[i] for i in order], fontsize=8, loc="best")
    span_h = requests[-1].offset_s / 3600.0 if requests else 0.0
    fig.suptitle(
        f"Idle policies on the Azure LLM code trace, thinned P={args.thin:g}, stretched K={args.stretch:g} "
        f"({len(requests)} jobs over {span_h:.1f} h); cold start {args.cold_start:g} s, "
        f"${args.price:g}/h",
        fontsize=10,
    )
    fig.tight_layout()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(args.out, dpi=120)
    plt.close(fig)
    print(f"wrote {args.out}")
    if args.out.resolve() == (REPO / "docs" / "policies.png").resolve():
        # The dashboard serves the same plot from its package data (the runtime never imports the simulator).
        shutil.copyfile(args.out, UI_COPY)
        print(f"wrote {UI_COPY}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
