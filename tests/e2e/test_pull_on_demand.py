"""Pull on demand (``gpuq dev --pull-on-demand``): a job for a model the box's server lacks waits while the
agent pulls it (``status_reason: pulling_model N%``), two jobs share one pull, and a failed pull fails the
job with the model server's reason."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from shared.fakes.ollama import fake_completion_text
from shared.tools.client import JobsClient
from shared.tools.devstack import DevStack
from tests.servers import start_stack

NEW_MODEL = "llama3.1:8b"  # the design's own example: not on the stand-in until pulled


@pytest.fixture(scope="module")
def pulling_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DevStack]:
    data_dir: Path = tmp_path_factory.mktemp("pull")
    stack = start_stack(data_dir, pull_on_demand=True, idle_grace_s=5.0)
    try:
        yield stack
    finally:
        stack.stop()


def _stand_in(stack: DevStack, path: str, **body: object) -> dict[str, object]:
    if body:
        httpx.post(f"{stack.ollama_url}/__fake__/{path}", json=body, timeout=10).raise_for_status()
    answer: dict[str, object] = httpx.get(f"{stack.ollama_url}/__fake__/{path}", timeout=10).json()
    return answer


def test_two_jobs_for_a_missing_model_share_one_pull_and_say_so_while_they_wait(pulling_stack: DevStack) -> None:
    stack = pulling_stack
    _stand_in(stack, "faults", pull_delay_s=2.0)
    pulls_before = int(_stand_in(stack, "stats")["pulls_completed"])  # type: ignore[call-overload]
    reasons: set[str] = set()
    with JobsClient(stack.url, stack.api_key) as client:
        jobs = [
            client.submit({"model": NEW_MODEL, "prompt": f"pull {i}", "options": {"num_predict": 5}}) for i in range(2)
        ]
        done = threading.Event()

        def watch() -> None:
            while not done.is_set():
                for job in jobs:
                    reasons.add(str(client.get(job["id"])["status_reason"]))
                time.sleep(0.05)

        watcher = threading.Thread(target=watch)
        watcher.start()
        try:
            finished = [client.wait(j["id"], timeout_s=60) for j in jobs]
        finally:
            done.set()
            watcher.join()
    assert [j["status"] for j in finished] == ["succeeded", "succeeded"]
    assert [j["output"] for j in finished] == [fake_completion_text(NEW_MODEL, f"pull {i}", 5) for i in range(2)]
    assert any(r.startswith("pulling_model ") and r.endswith("%") for r in reasons), reasons
    assert int(_stand_in(stack, "stats")["pulls_completed"]) == pulls_before + 1  # type: ignore[call-overload]


def test_a_failed_pull_fails_the_job_with_the_servers_reason(pulling_stack: DevStack) -> None:
    stack = pulling_stack
    _stand_in(stack, "faults", error_status=500, error_message="registry unreachable", times=1)
    with JobsClient(stack.url, stack.api_key) as client:
        job = client.submit({"model": "qwen2.5:7b", "prompt": "never pulled"})
        failed = client.wait(job["id"], timeout_s=60)
    assert failed["status"] == "failed" and "registry unreachable" in failed["error"]["message"]
