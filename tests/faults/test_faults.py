"""The fault-injection suite: 0 lost, 0 duplicated, 0 boxes left running in every scenario."""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Callable

import httpx

from shared.fakes.ollama import fake_completion_text
from shared.store.queue import TaskQueue
from shared.tools.devstack import free_port
from tests.faults.conftest import Audit, kill_agent
from tests.servers import MODEL, wait_until

Scenario = Callable[..., Audit]


def output_started(audit: Audit, job_id: str) -> bool:
    return bool(audit.client.get(job_id)["output"])


def test_agent_killed_mid_stream(scenario: Scenario) -> None:
    audit = scenario("agent_killed_mid_stream", token_delay_s=0.01)
    ids = [audit.submit(options={"num_predict": 150}) for _ in range(3)]
    wait_until(lambda: output_started(audit, ids[0]), 30, "first job streaming")
    kill_agent(audit.stack)
    final = audit.finish()
    assert max(job["attempts"] for job in final.values()) == 2  # re-driven onto a fresh box
    for job_id, job in final.items():
        assert job["output"] == fake_completion_text(MODEL, audit.jobs[job_id], 150)


def test_model_server_killed_mid_stream(scenario: Scenario) -> None:
    """The box stays up but its model server dies mid-answer: the attempt fails with model_server_unreachable,
    the control plane re-drives it, and once the server is back the job's output is whole."""
    audit = scenario("model_server_killed_mid_stream", token_delay_s=0.01, settings={"model_server_retry_s": 1.5})
    ids = [audit.submit(options={"num_predict": 150}) for _ in range(2)]
    wait_until(lambda: output_started(audit, ids[0]), 30, "first job streaming")
    audit.stack.kill_model_server()
    retrying = "retrying_after_model_server_unreachable"
    wait_until(lambda: audit.client.get(ids[0])["status_reason"] == retrying, 30, "first job waiting to be re-driven")
    audit.stack.start_model_server()
    final = audit.finish()
    assert final[ids[0]]["attempts"] >= 2 and final[ids[0]]["status"] == "succeeded"
    for job_id, job in final.items():
        assert job["output"] == fake_completion_text(MODEL, audit.jobs[job_id], 150)


def test_functions_killed_mid_dispatch(scenario: Scenario) -> None:
    audit = scenario("functions_killed_mid_dispatch")
    for _ in range(4):
        audit.submit()
    audit.stack.kill_functions()
    time.sleep(1.0)  # the functions are down for a while: the queue keeps retrying, agents keep resending
    audit.stack.start_functions()
    audit.finish()


def test_queue_redelivers_every_task(scenario: Scenario) -> None:
    audit = scenario("queue_redelivery")
    ids = [audit.submit() for _ in range(3)]
    queue = TaskQueue(audit.stack.settings)
    wait_until(lambda: all(audit.client.get(j)["status"] != "queued" for j in ids), 30, "jobs dispatched")
    for job_id in ids:  # every dispatch task this job ever had, delivered again, several times
        for _ in range(3):
            for seq in range(0, 4):
                queue.push(audit.stack.settings.job_queue, {"kind": "job", "job_id": job_id, "seq": seq})
            queue.push(audit.stack.settings.lease_queue, {"kind": "lease", "job_id": job_id, "attempt": 1})
    final = audit.finish()
    for job_id in ids:
        queue.push(
            audit.stack.settings.callback_queue,
            {
                "kind": "callback",
                "job_id": job_id,
                "type": "job.completed",
                "event_id": f"evt_{job_id}_1_completed",
                "try": 1,
            },
        )
    assert all(job["attempts"] == 1 for job in final.values())
    wait_until(lambda: queue.count_tasks(audit.stack.settings.callback_queue) == 0, 20, "callback tasks drained")
    assert audit.receiver.duplicates == 0


def test_self_stop_races_new_jobs(scenario: Scenario) -> None:
    audit = scenario("self_stop_races_new_job", idle_grace_s=0.8)
    for delay in (0.7, 0.8, 0.85, 0.9, 1.0):
        job_id = audit.submit()
        wait_until(lambda: audit.client.get(job_id)["status"] == "succeeded", 30, "job done")  # noqa: B023 (called in the loop)
        time.sleep(delay)  # land the next job right around the box's decision to stop
    audit.finish()


def test_callback_receiver_down_then_back(scenario: Scenario) -> None:
    audit = scenario("callback_receiver_down")
    audit.receiver.fail_next(6)
    ids = [audit.submit() for _ in range(3)]
    audit.finish()

    def recorded() -> bool:  # the receiver has them; the job records each try right after its answer
        return all(audit.client.get(j)["callback"]["delivered"] for j in ids)

    wait_until(recorded, 10, "deliveries recorded")
    jobs = [audit.client.get(j) for j in ids]
    retried = [d for job in jobs for d in job["callback"]["deliveries"] if d["outcome"] == "retrying"]
    assert len(retried) == 6
    assert all(job["callback"]["delivered"] == [f"evt_{job['id']}_1_completed"] for job in jobs)


def test_job_exceeding_timeout(scenario: Scenario) -> None:
    audit = scenario("job_exceeds_timeout", token_delay_s=0.01)
    slow = audit.submit(options={"num_predict": 1000}, timeout_s=0.6)
    fine = audit.submit()
    final = audit.finish(expected={slow: "failed", fine: "succeeded"})
    job = final[slow]
    assert job["error"]["code"] == "timeout" and job["status_reason"] == "timeout"
    assert job["output"] and fake_completion_text(MODEL, audit.jobs[slow], 1000).startswith(job["output"])


def test_cancel_while_queued_and_while_streaming(scenario: Scenario) -> None:
    audit = scenario("cancel_queued_and_streaming", token_delay_s=0.01)
    queued = audit.submit()
    audit.client.cancel(queued)
    streaming = audit.submit(options={"num_predict": 2000})
    wait_until(lambda: output_started(audit, streaming), 30, "streaming")
    audit.client.cancel(streaming)
    final = audit.finish(expected={queued: "cancelled", streaming: "cancelled"})
    assert final[streaming]["output"] and len(final[streaming]["output"]) < len(
        fake_completion_text(MODEL, audit.jobs[streaming], 2000)
    )
    assert {e.type for e in audit.receiver.events} == {"job.cancelled"}


def test_sqlite_store_busy(scenario: Scenario) -> None:
    audit = scenario("sqlite_store_busy")
    audit.submit()
    locked = threading.Event()

    def hold_lock() -> None:
        db = sqlite3.connect(audit.stack.settings.sqlite_path(), isolation_level=None)
        db.execute("BEGIN EXCLUSIVE")
        locked.set()
        time.sleep(2.0)  # the store is busy this long: every writer waits (busy timeout), none fails
        db.execute("COMMIT")
        db.close()

    holder = threading.Thread(target=hold_lock)
    holder.start()
    locked.wait(5)
    for _ in range(2):
        audit.submit()
    holder.join()
    audit.finish()


def test_provider_api_5xx_and_429_bursts(scenario: Scenario) -> None:
    """Boxes rented through the fake Vast API, which answers bursts of 503s and 429s (plain text too),
    and refuses the box's first self-stop with ``success: false``."""
    audit = scenario("provider_api_bursts", provider="vast-fake", vast_port=free_port())
    stack = audit.stack
    faults = {"error_burst": 4, "error_status": 503, "rate_limit_burst": 4, "stop_fails": 1}
    armed = httpx.post(
        stack.vast_url + "/__fake__/faults",
        json=faults,
        timeout=10,
        headers={"Authorization": f"Bearer {stack.vast_api_key}"},
    )
    assert armed.status_code == 200, armed.text
    for _ in range(3):
        audit.submit()
    audit.finish()
    calls = httpx.get(stack.vast_url + "/__fake__/calls", timeout=10).json()
    statuses = {code for per_endpoint in calls["statuses"].values() for code in per_endpoint}
    assert {"503", "429"} <= statuses  # the bursts were really served, and absorbed


def test_fleet_box_lost_and_jobs_landing_while_boxes_drain(scenario: Scenario) -> None:
    """Three boxes, one job a box: one agent dies mid-job, the functions restart, and a second burst lands
    while the first burst's boxes are deciding to stop."""
    audit = scenario("fleet_lost_box_and_drains", max_boxes=3, jobs_per_box=1, token_delay_s=0.01, idle_grace_s=0.8)
    ids = [audit.submit(options={"num_predict": 120}) for _ in range(6)]
    wait_until(lambda: len({audit.client.get(j)["instance_id"] for j in ids} - {None}) >= 2, 30, "two boxes busy")
    victim = next(job for job in (audit.client.get(j) for j in ids) if job["status"] == "running")
    kill_agent(audit.stack, victim["instance_id"])
    audit.stack.kill_functions()
    audit.stack.start_functions()
    wait_until(lambda: all(audit.client.get(j)["status"] == "succeeded" for j in ids[:3]), 60, "first jobs done")
    for delay in (0.6, 0.75, 0.8, 0.85):
        audit.submit(options={"num_predict": 10})
        time.sleep(delay)  # land each job around some box's decision to stop
    final = audit.finish()
    assert final[victim["id"]]["attempts"] >= 2
    assert len({job["instance_id"] for job in final.values()}) >= 2
