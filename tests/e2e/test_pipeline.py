"""The whole story over real sockets: emulator, functions, local provider, agent, Ollama stand-in, receiver."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest

from shared.fakes.ollama import fake_completion_text
from shared.tools.client import JobsClient
from shared.tools.devstack import DevStack, free_port
from shared.tools.receiver import CallbackReceiver
from tests.servers import MODEL, instance_stopped, start_stack, wait_until

NUM_TOKENS = 24  # the stand-in's default length


@pytest.fixture(params=["local", "vast-fake", "ovh-fake"])
def any_stack(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[DevStack]:
    """The whole pipeline on local boxes, on boxes rented from the fake Vast API, and on an app run by the
    fake `ovhai` CLI. One test uses it, so each stack is started once (the local one is the session's)."""
    if request.param == "local":
        yield request.getfixturevalue("stack")  # reset for this test
        return
    running = start_stack(tmp_path_factory.mktemp(request.param), provider=request.param, vast_port=free_port())
    try:
        yield running
    finally:
        running.stop()


def test_three_jobs_one_cold_start_streamed_delivered_then_the_box_stops_itself(any_stack: DevStack) -> None:
    stack = any_stack
    client = JobsClient(stack.url, stack.api_key)
    receiver = CallbackReceiver(stack.settings.webhook_secret).start()
    try:
        _pipeline(stack, client, receiver)
    finally:
        client.close()
        receiver.stop()


def _pipeline(stack: DevStack, client: JobsClient, receiver: CallbackReceiver) -> None:
    wait_until(lambda: instance_stopped(stack), 60, "the box to be stopped before the test")
    starts_before = stack.box_starts()
    run = uuid.uuid4().hex[:8]
    prompts = [f"why is the sky blue? ({run}/{i})" for i in range(3)]
    jobs = [client.submit({"model": MODEL, "prompt": p, "callback_url": receiver.url}) for p in prompts]
    assert all(j["status"] == "queued" for j in jobs)

    # Stream the first job: chunks arrive in order and add up to the stand-in's exact text.
    texts, ids, reasons = [], [], []
    for event in client.stream(jobs[0]["id"]):
        if event.event == "status":
            reasons.append(event.data["status_reason"])
        elif event.event == "output":
            texts.append(event.data["text"])
            ids.append(event.id)
        elif event.event == "done":
            assert event.data["status"] == "succeeded"
            break
    assert "".join(texts) == fake_completion_text(MODEL, prompts[0], NUM_TOKENS)
    seqs = [int((i or "").split("-")[1]) for i in ids]
    assert seqs == sorted(seqs) and len(set(seqs)) == len(seqs)
    assert "provisioning_instance" in reasons

    # Three signed callbacks, each with its job's exact text.
    wanted = {j["id"] for j in jobs}
    assert receiver.wait_for(lambda evs: wanted <= {e.data["id"] for e in evs}, timeout=60)
    by_id = {e.data["id"]: e for e in receiver.events}
    for job, prompt in zip(jobs, prompts, strict=True):
        callback = by_id[job["id"]]
        assert callback.type == "job.completed" and callback.verified
        assert callback.data["status"] == "succeeded"
        assert callback.data["output"] == fake_completion_text(MODEL, prompt, NUM_TOKENS)
    assert receiver.duplicates == 0

    # One instance start for all three, and the box stops itself after the idle grace.
    assert stack.box_starts() == starts_before + 1
    wait_until(lambda: instance_stopped(stack), 30, "the box to stop itself")
    final = client.get(jobs[2]["id"])
    assert final["status"] == "succeeded" and final["attempts"] == 1
    assert final["instance_id"] == stack.settings.instance_id
    assert final["callback"]["delivered"] == [f"evt_{jobs[2]['id']}_1_completed"]


def test_a_warm_box_takes_a_job_without_a_new_start(stack: DevStack, client: JobsClient) -> None:
    first = client.submit({"model": MODEL, "prompt": f"warm-up {uuid.uuid4()}"})
    assert client.wait(first["id"], timeout_s=60)["status"] == "succeeded"
    starts = stack.box_starts()
    prompt = f"warm {uuid.uuid4()}"
    second = client.submit({"model": MODEL, "messages": [{"role": "user", "content": prompt}]})
    done = client.wait(second["id"], timeout_s=60)
    assert done["status"] == "succeeded"
    assert done["output"] == fake_completion_text(MODEL, prompt, NUM_TOKENS)
    assert stack.box_starts() == starts


def test_stream_resumes_after_last_event_id_without_loss_or_duplication(stack: DevStack, client: JobsClient) -> None:
    prompt = f"resume {uuid.uuid4()}"
    job = client.submit({"model": MODEL, "prompt": prompt})
    client.wait(job["id"], timeout_s=60)
    events = [e for e in client.stream(job["id"]) if e.event == "output"]
    assert len(events) >= 2
    cut = events[0].id
    resumed = [e for e in client.stream(job["id"], last_event_id=cut) if e.event == "output"]
    assert [e.id for e in resumed] == [e.id for e in events[1:]]
    assert "".join(e.data["text"] for e in events[:1] + resumed) == fake_completion_text(MODEL, prompt, NUM_TOKENS)


def test_cancel_a_queued_job_keeps_it_cancelled(stack: DevStack, client: JobsClient) -> None:
    job = client.submit({"model": MODEL, "prompt": f"cancel me {uuid.uuid4()}", "options": {"num_predict": 2000}})
    cancelled = client.cancel(job["id"])
    assert cancelled["status"] == "cancelled" and cancelled["status_reason"] == "cancelled_by_client"
    assert client.wait(job["id"], timeout_s=10)["status"] == "cancelled"
