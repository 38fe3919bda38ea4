"""The benchmarks still run: each script with tiny settings, exit 0, well-formed JSON with the expected keys.

No timing is asserted (a CI machine's numbers mean nothing); what is asserted is that every path
measured really worked: all streams arrived with the exact text, every gpuq job was stored, every
accepted enqueue is in the store and the queue.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from bench.run_all import BENCHMARKS, QUICK

REPO = Path(__file__).resolve().parents[2]
TARGET_KEYS = {"name", "measured", "limit", "unit", "pass"}
EXPECTED_KEYS = {
    "agent_stream": {
        "benchmark",
        "machine",
        "settings",
        "setup",
        "latency",
        "throughput",
        "cpu_per_request",
        "idle_cpu_ms_per_s",
        "targets",
        "checks",
        "duration_s",
    },
    "control_plane": {
        "benchmark",
        "machine",
        "settings",
        "store",
        "queue",
        "enqueue",
        "warm_first_token",
        "ready_to_running",
        "targets",
        "duration_s",
    },
    "import_time": {"benchmark", "machine", "settings", "modules", "targets", "duration_s"},
    "fleet": {"benchmark", "machine", "settings", "pools", "targets", "duration_s"},
    "openai_front": {"benchmark", "machine", "settings", "ttft", "held", "targets", "duration_s"},
}
ROW_KEYS = {
    "streams",
    "path",
    "requests",
    "ttfc_p50_ms",
    "ttfc_p99_ms",
    "gap_p50_ms",
    "gap_p99_ms",
    "chunks_per_s",
    "cpu_ms_per_request",
    "cpu_ms_per_1k_tokens",
    "ttfc_p50_x_direct",
    "errors",
    "wrong_text",
}


def run(args: list[str], timeout_s: float = 100.0) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(
        [sys.executable, "-m", *args], cwd=REPO, capture_output=True, text=True, timeout=timeout_s, check=False
    )
    assert done.returncode == 0, (
        f"{' '.join(args)} exited {done.returncode}:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    )
    return done


def results(results_dir: Path, name: str) -> dict[str, Any]:
    body: dict[str, Any] = json.loads((results_dir / f"{name}.json").read_text())
    assert body.keys() >= EXPECTED_KEYS[name]
    assert body["benchmark"] == name and body["machine"]["nproc"] >= 1
    assert body["targets"] and all(t.keys() >= TARGET_KEYS for t in body["targets"])
    return body


def check_agent_stream(body: dict[str, Any]) -> None:
    for phase in ("latency", "throughput", "cpu_per_request"):
        rows = body[phase]
        assert {r["path"] for r in rows} == {"direct", "gpuq", "direct-openai", "gpuq-openai", "pyworker"}
        for row in rows:
            assert row.keys() >= ROW_KEYS
            assert row["requests"] > 0 and row["errors"] == 0 and row["wrong_text"] == 0, row
    for name, jobs in body["checks"]["gpuq_jobs"].items():  # the agent on each backend: gpuq, gpuq-openai
        assert jobs["jobs"] > 0 and jobs["succeeded"] == jobs["stored_text_exact"] == jobs["jobs"], name
    assert set(body["checks"]["gpuq_jobs"]) == {"gpuq", "gpuq-openai"}
    assert body["checks"]["pyworker_autoscaler"]["deleted_requests"] > 0  # PyWorker really ran its reporting


def check_control_plane(body: dict[str, Any]) -> None:
    assert all(r["durable"] and r["errors"] == 0 for r in body["enqueue"])
    assert body["warm_first_token"]["enqueue_to_first_token"]["n"] >= 1
    assert [r["failures"] for r in body["ready_to_running"]] == [0, 0]
    assert body["queue"]["pushes"] > 0 and all(r["jobs"] > 0 for r in body["store"])


def check_import_time(body: dict[str, Any]) -> None:
    assert [m["module"] for m in body["modules"]] == [
        "functions.enqueue",
        "functions.trigger",
        "functions.dispatch",
        "functions.reaper",
    ]
    assert all(m["import_ms"] > 0 and m["importtime_ms"] > 0 for m in body["modules"])


def check_fleet(body: dict[str, Any]) -> None:
    pools = body["pools"]
    assert [p["max_boxes"] for p in pools] == [1, 2] and all(p["failed"] == [] for p in pools)
    assert pools[0]["boxes_used"] == 1 and all(p["makespan_s"] > 0 and p["ideal_s"] > 0 for p in pools)


def check_openai_front(body: dict[str, Any]) -> None:
    assert body["ttft"]["jobs_api"]["p50_ms"] > 0 and body["ttft"]["openai"]["p50_ms"] > 0
    assert [(r["held"], r["ok"]) for r in body["held"]] == [(4, 4)]


CHECKS = {
    "agent_stream": check_agent_stream,
    "control_plane": check_control_plane,
    "fleet": check_fleet,
    "openai_front": check_openai_front,
    "import_time": check_import_time,
}


@pytest.mark.parametrize("module", [m for m, _ in BENCHMARKS])
def test_benchmark_runs_tiny_and_writes_well_formed_results(module: str, tmp_path: Path) -> None:
    done = run([module, "--results-dir", str(tmp_path), *QUICK[module]])
    assert "## Targets" in done.stdout
    name = module.split(".")[-1]
    CHECKS[name](results(tmp_path, name))


def test_run_all_writes_a_summary_of_every_target(tmp_path: Path) -> None:
    run(["bench.run_all", "--quick", "--only", "bench.import_time", "--results-dir", str(tmp_path)])
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["failures"] == [] and len(summary["targets"]) == 4
    assert "# All targets" in (tmp_path / "summary.md").read_text()
