"""A pool of several local boxes on the real stack: a burst starts more boxes, idle boxes drain and stop
(never a busy one), and a box lost mid-job has its job finished elsewhere."""

from __future__ import annotations

import os
import signal
import uuid

from tests.fleet.conftest import StackFactory, box_pid, client_for, stand_in_stats, up_boxes
from tests.servers import MODEL, wait_until


def test_a_burst_starts_max_boxes_runs_each_job_once_then_every_box_stops(fleet_stack: StackFactory) -> None:
    # 40 jobs of 24 tokens at 20 ms a token, 2 at once a box: about 10 s on one box.
    stack = fleet_stack(max_boxes=3, jobs_per_box=2, token_delay_s=0.02, idle_grace_s=1.0)
    client = client_for(stack)
    run = uuid.uuid4().hex[:8]
    jobs = [client.submit({"model": MODEL, "prompt": f"burst {run} #{i}"}) for i in range(40)]
    done = [client.wait(job["id"], timeout_s=120) for job in jobs]
    assert [j["status"] for j in done] == ["succeeded"] * 40
    assert {j["instance_id"] for j in done} == {"local-1", "local-2", "local-3"}
    assert sorted(box for box, _, starts in stack.boxes() if starts) == ["local-1", "local-2", "local-3"]
    per_prompt = stand_in_stats(stack)["generations_by_prompt"]
    assert sorted(per_prompt.get(f"burst {run} #{i}", 0) for i in range(40)) == [1] * 40  # each generated once
    wait_until(lambda: not up_boxes(stack), 60, "every box to stop after the idle grace")
    assert all(starts == 1 for _, _, starts in stack.boxes())
    client.close()


def test_scale_in_stops_the_idle_box_never_the_busy_one(fleet_stack: StackFactory) -> None:
    stack = fleet_stack(max_boxes=2, jobs_per_box=1, token_delay_s=0.02, idle_grace_s=1.0)
    client = client_for(stack)
    long = client.submit({"model": MODEL, "prompt": "long one", "options": {"num_predict": 600}})  # ~12 s
    short = client.submit({"model": MODEL, "prompt": "short one", "options": {"num_predict": 5}})
    finished = client.wait(short["id"], timeout_s=60)
    running = client.get(long["id"])
    assert running["status"] == "running" and finished["instance_id"] != running["instance_id"]
    wait_until(lambda: up_boxes(stack) == {running["instance_id"]}, 30, "the idle box to stop, the busy one not")
    states = {i["id"]: i["state"] for i in client.instances()["instances"]}
    assert states[running["instance_id"]] == "ready"
    assert client.wait(long["id"], timeout_s=60)["status"] == "succeeded"
    wait_until(lambda: not up_boxes(stack), 30, "the last box to stop once idle")
    client.close()


def test_a_box_lost_mid_job_has_its_job_finished_by_another_attempt(fleet_stack: StackFactory) -> None:
    stack = fleet_stack(max_boxes=2, jobs_per_box=1, token_delay_s=0.02, idle_grace_s=1.0, overrides={"lease_s": 2.0})
    client = client_for(stack)
    jobs = [
        client.submit({"model": MODEL, "prompt": f"lost box {i}", "options": {"num_predict": 150}}) for i in range(2)
    ]
    wait_until(lambda: all(client.get(j["id"])["status"] == "running" for j in jobs), 30, "both jobs to run")
    victim = client.get(jobs[0]["id"])
    os.kill(box_pid(stack, victim["instance_id"]), signal.SIGKILL)
    done = [client.wait(j["id"], timeout_s=90) for j in jobs]
    assert [j["status"] for j in done] == ["succeeded", "succeeded"]
    assert done[0]["attempts"] >= 2
    wait_until(lambda: not up_boxes(stack), 60, "every box, the lost one included, to be stopped")
    client.close()
