"""``GET /metrics`` of the control plane on the real stack: Prometheus text (parsed with prometheus_client's own
parser), values read from the store, behind an API key."""

from __future__ import annotations

import httpx
from prometheus_client.parser import text_string_to_metric_families

from shared.tools.client import JobsClient
from shared.tools.devstack import DevStack
from shared.tools.receiver import CallbackReceiver
from tests.servers import MODEL, instance_stopped, wait_until


def _samples(text: str) -> dict[str, float]:
    return {
        s.name + "{" + ",".join(f"{k}={v}" for k, v in sorted(s.labels.items())) + "}": s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def test_metrics_show_the_jobs_the_box_and_the_waits_from_the_store(
    stack: DevStack, client: JobsClient, receiver: CallbackReceiver
) -> None:
    assert httpx.get(stack.url + "/metrics").status_code == 401
    body = {"model": MODEL, "callback_url": receiver.url}
    jobs = [client.submit(body | {"prompt": f"watch me {i}"}) for i in range(3)]
    assert all(client.wait(j["id"], timeout_s=60)["status"] == "succeeded" for j in jobs)
    receiver.wait_for(lambda events: len(events) >= 3, timeout=30)
    wait_until(lambda: all(client.get(j["id"])["callback"]["delivered"] for j in jobs), 30, "deliveries recorded")
    answer = httpx.get(stack.url + "/metrics", headers={"Authorization": f"Bearer {stack.api_key}"})
    assert answer.status_code == 200 and answer.headers["content-type"].startswith("text/plain; version=0.0.4")
    seen = _samples(answer.text)
    assert seen[f"gpuq_jobs_total{{model={MODEL},pool=default,status=succeeded}}"] == 3
    assert seen["gpuq_queue_depth{pool=default}"] == 0 and seen["gpuq_jobs_running{pool=default}"] == 0
    assert seen["gpuq_time_to_first_token_seconds_count{}"] == 3 and seen["gpuq_queue_wait_seconds_count{}"] == 3
    assert seen["gpuq_time_to_first_token_seconds_sum{}"] > 0
    assert sum(v for k, v in seen.items() if k.startswith("gpuq_instances{pool=default")) == 1  # one box, one state
    assert seen["gpuq_callback_deliveries_total{outcome=delivered}"] == 3
    assert seen["gpuq_callback_deliveries_total{outcome=failed}"] == 0
    assert seen["gpuq_cold_start_seconds_count{phase=total,pool=default}"] == 1  # one box start for the three
    assert seen["gpuq_cold_start_seconds_count{phase=model_load,pool=default}"] >= 1
    assert seen["gpuq_cost_usd_total{pool=default}"] >= 0

    def boxes_up() -> float:  # starting, ready or draining, as the gauge says
        now = _samples(httpx.get(stack.url + "/metrics", headers={"Authorization": f"Bearer {stack.api_key}"}).text)
        return sum(v for k, v in now.items() if k.startswith("gpuq_instances{") and "state=stopped" not in k)

    wait_until(lambda: instance_stopped(stack) and boxes_up() == 0, 60, "the idle box stopped, as the gauge says")
    after = _samples(httpx.get(stack.url + "/metrics", headers={"Authorization": f"Bearer {stack.api_key}"}).text)
    assert after["gpuq_instances{pool=default,state=stopped}"] == 1
    assert after["gpuq_instance_idle_seconds_total{pool=default}"] > 0
