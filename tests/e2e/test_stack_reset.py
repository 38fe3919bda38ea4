"""The per-test reset of the session's stack: whatever a test leaves running, the next one finds nothing
(no box up, no queued task, an empty store), and the stack still runs jobs after it."""

from __future__ import annotations

import uuid

import pytest

from shared.errors import ApiError
from shared.tools.client import JobsClient
from shared.tools.devstack import DevStack
from shared.tools.receiver import CallbackReceiver
from tests.servers import MODEL, wait_until
from tests.stack_reset import StackReset


def test_a_reset_leaves_nothing_behind_and_the_stack_still_works(
    stack: DevStack, client: JobsClient, stack_reset: StackReset
) -> None:
    assert stack_reset.leftovers() == {"boxes": 0, "tasks": 0, "rows": 0}  # as this test found it
    gone = CallbackReceiver(stack.settings.webhook_secret).start()
    gone.stop()  # its deliveries fail and are retried: callback tasks stay queued
    long = client.submit({"model": MODEL, "prompt": f"long {uuid.uuid4()}", "options": {"num_predict": 2000}})
    waiting = [client.submit({"model": MODEL, "prompt": f"queued {i}", "callback_url": gone.url}) for i in range(3)]
    wait_until(lambda: client.get(long["id"])["status"] == "running", 60, "the long job to run")
    left = stack_reset.leftovers()
    assert left["boxes"] == 1 and left["tasks"] >= 1 and left["rows"] >= 4

    stack_reset()
    assert stack_reset.leftovers() == {"boxes": 0, "tasks": 0, "rows": 0}
    for job in (long, *waiting):
        with pytest.raises(ApiError) as caught:
            client.get(job["id"])
        assert caught.value.status == 404
    # Every queue still dispatches (a purge at the wrong moment would have stopped one for good).
    receiver = CallbackReceiver(stack.settings.webhook_secret).start()
    try:
        after = client.submit({"model": MODEL, "prompt": f"after {uuid.uuid4()}", "callback_url": receiver.url})
        assert client.wait(after["id"], timeout_s=60)["status"] == "succeeded"
        assert receiver.wait_for(lambda events: after["id"] in {e.data["id"] for e in events}, timeout=30)
    finally:
        receiver.stop()
