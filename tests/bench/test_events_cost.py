"""bench/events_cost.py still runs (tiny settings): exit 0, its JSON well-formed, and what it measured real:
with events on, each job's four events were kept (one store write each) and nothing was kept with them off.
No timing is asserted."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def test_the_events_cost_benchmark_counts_the_events_writes(tmp_path: Path) -> None:
    argv = ["--jobs", "3", "--reports", "2", "--rounds", "1", "--results-dir", str(tmp_path)]
    done = subprocess.run(
        [sys.executable, "-m", "bench.events_cost", *argv], cwd=REPO, capture_output=True, text=True, timeout=100
    )
    assert done.returncode == 0, done.stderr[-2000:]
    result = json.loads((tmp_path / "events_cost.json").read_text())
    (run,) = result["rounds"]
    assert run["on"]["writes_per_job"] - run["off"]["writes_per_job"] == 4  # queued, started, output, succeeded
    assert {"job.queued", "job.started", "job.output", "job.succeeded"} <= set(run["on"]["event_types_kept"])
    assert run["off"]["event_types_kept"] == []
    assert set(result["summary"]) == {"reads_per_job", "writes_per_job", "pushes_per_job", "cpu_ms_per_job"}
