"""The command line of ``python -m bench.agent_stream``: every option, its default and its help."""

from __future__ import annotations

import argparse
from pathlib import Path

from bench import agent_stream
from bench.report import RESULTS_DIR, int_list

__all__ = ["parse_args"]


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="bench.agent_stream", description=(agent_stream.__doc__ or "").split("\n")[0])
    p.add_argument("--rounds", type=int, default=12, help="latency rounds (each path: singles, 8, 32 streams)")
    p.add_argument("--streams", type=int_list, default=[1, 8, 32], help="concurrency levels of the latency phase")
    p.add_argument("--singles", type=int, default=3, help="one-at-a-time streams per path per round")
    p.add_argument("--tokens", type=int, default=200, help="tokens per stream")
    p.add_argument("--token-delay-ms", type=float, default=5.0)
    p.add_argument("--throughput-rounds", type=int, default=4)
    p.add_argument("--throughput-streams", type=int_list, default=[1, 32])
    p.add_argument("--cpu-requests", type=int, default=320, help="one-token requests per path (CPU per request)")
    p.add_argument("--cpu-concurrency", type=int, default=8)
    p.add_argument("--idle-s", type=float, default=2.0, help="quiet window measuring each proxy's idle CPU")
    p.add_argument("--no-pyworker", action="store_true", help="skip Vast's PyWorker (no vastai venv)")
    p.add_argument(
        "--backends",
        type=lambda t: [x.strip() for x in t.split(",")],
        default=["ollama", "openai"],
        help="the agent's backends measured: ollama (direct + gpuq), openai (direct-openai + gpuq-openai)",
    )
    p.add_argument(
        "--pyworker-auth",
        action="store_true",
        help="run PyWorker secured (UNSECURED=false): it verifies an RSA signature per request",
    )
    p.add_argument(
        "--phases",
        type=lambda t: [x.strip() for x in t.split(",")],
        default=["latency", "throughput", "cpu"],
        help="which phases to run",
    )
    _add_diagnostics(p)
    p.add_argument("--max-s", type=float, default=480.0, help="stop starting new rounds after this long")
    p.add_argument("--results-dir", type=Path, default=RESULTS_DIR)
    p.add_argument("--keep-logs", action="store_true", help="keep the work folder (logs of every process)")
    return p.parse_args(argv)


def _add_diagnostics(p: argparse.ArgumentParser) -> None:
    """Options for finding causes and trying changes, not for the reference run."""
    p.add_argument(
        "--profile",
        type=Path,
        default=None,
        metavar="DIR",
        help="record py-spy profiles of the agent, PyWorker and the functions worker into DIR "
        "(perturbs the numbers: for finding causes only)",
    )
    p.add_argument("--profile-gil", action="store_true", help="profile only the thread holding the GIL (CPU)")
    p.add_argument(
        "--nice-control-plane",
        action="store_true",
        help="renice the functions and emulator processes to 19: the control plane then takes only "
        "spare CPU, as if it ran elsewhere (its work and CPU are still measured)",
    )
    p.add_argument(
        "--agent-path",
        type=Path,
        default=None,
        metavar="DIR",
        help="put DIR first on the agent's PYTHONPATH: measure a proposed agent (or dependency) change",
    )
    p.add_argument(
        "--agent-env",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="extra agent setting, e.g. GPUQ_AGENT_REPORT_INTERVAL_S=1 (to try a setting)",
    )
