"""Budgets over the local stack: at the cap the queue pauses and jobs wait; raised, they run. None dropped."""

from __future__ import annotations

from pathlib import Path

from shared.tools.client import JobsClient
from tests.servers import MODEL, instance_stopped, start_stack, wait_until


def test_budget_pauses_the_queue_and_resumes_when_raised(tmp_path: Path) -> None:
    # A box that bills $0.40 a second, a $1 daily cap: the first job's session (a cold start of 1-2 s, the
    # job, 3 s of idle grace) crosses it for good after its job ran, not only while it is estimated.
    overrides = {"local_price_per_hour": 1440.0, "budget_daily_usd": 1.0}
    stack = start_stack(tmp_path, idle_grace_s=3.0, overrides=overrides)
    try:
        with JobsClient(stack.url, stack.api_key) as client:
            first = client.submit({"model": MODEL, "prompt": "spend"})
            assert client.wait(first["id"], timeout_s=60)["status"] == "succeeded"
            wait_until(lambda: instance_stopped(stack), 30, "the box to stop")
            wait_until(lambda: client.cost("1h")["billed_usd"] >= 1.0, 30, "spend past the cap")

            second = client.submit({"model": MODEL, "prompt": "wait for budget"})
            wait_until(
                lambda: client.get(second["id"])["status_reason"] == "budget_exceeded",
                30,
                "the job to wait for the budget",
            )
            assert client.get(second["id"])["status"] in ("queued", "starting")
            assert instance_stopped(stack)  # nothing started while over budget

            stack.settings = stack.settings.model_copy(update={"budget_daily_usd": 1000.0})
            stack.kill_functions()
            stack.start_functions()
            done = client.wait(second["id"], timeout_s=60)
            assert done["status"] == "succeeded"
            report = client.cost("1h")
            assert report["cold_starts"] == 2 and report["billed_usd"] > 1.0
            first_cost = client.get(first["id"])["cost_usd"]
            assert first_cost is not None and first_cost > 0
        log = (stack.log_dir / "functions.log").read_text()
        assert "cost.budget_warning" in log and "cost.budget_exceeded" in log and "job queue resumed" in log
    finally:
        stack.stop()
