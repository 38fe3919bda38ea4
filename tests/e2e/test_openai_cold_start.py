"""The OpenAI SDK through a cold start longer than its own retry budget (stock settings: two retries,
0.5 to 8 s backoff): streaming rides it out on SSE comment lines, a held request on 503 + Retry-After and a
re-attach, never with a second generation. And 32 streams through one cold start, the process answering
meanwhile."""

from __future__ import annotations

import statistics
import threading
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest

from shared.fakes.ollama import fake_completion_text
from shared.tools.devstack import DevStack
from tests.servers import MODEL, start_stack, wait_until

LOAD_S = 4.0  # the model load of every cold start: with the box's own start, ~5 s before the first token


@pytest.fixture(scope="module")
def slow_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DevStack]:
    data_dir: Path = tmp_path_factory.mktemp("openai-cold")
    stack = start_stack(
        data_dir,
        load_delay_s=LOAD_S,
        idle_grace_s=0.5,
        overrides={"openai_hold_s": 3.0, "openai_retry_after_s": 1.0},
    )
    try:
        yield stack
    finally:
        stack.stop()


def _cold(stack: DevStack) -> None:
    """Every test starts from a stopped box."""
    wait_until(lambda: not stack.box_running(), 60, "the box to stop")


def _generations(stack: DevStack, prompt: str) -> int:
    stats = httpx.get(f"{stack.ollama_url}/__fake__/stats", timeout=10).json()
    return int(stats["generations_by_prompt"].get(prompt, 0))


def test_a_held_request_rides_out_the_cold_start_on_503_and_re_attaches(slow_stack: DevStack) -> None:
    _cold(slow_stack)
    prompt = f"cold and held {uuid.uuid4().hex[:6]}"
    tries: list[str] = []

    def count(request: Any) -> None:  # the SDK's own HTTP client (httpx2) calls it for every try
        tries.append(request.headers.get("x-stainless-retry-count", "?"))

    http = openai.DefaultHttpxClient(event_hooks={"request": [count]}, timeout=60)
    with openai.OpenAI(base_url=slow_stack.url + "/v1", api_key=slow_stack.api_key, http_client=http) as sdk:
        started = time.monotonic()
        answer = sdk.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": prompt}], max_tokens=6)
        waited = time.monotonic() - started
    assert answer.choices[0].message.content == fake_completion_text(MODEL, prompt, 6)
    assert waited > LOAD_S and len(tries) >= 2 and tries[0] == "0"  # held, answered 503, retried by the SDK
    assert _generations(slow_stack, prompt) == 1  # the retries re-attached: one job, one generation


def test_a_stream_answers_at_once_and_says_why_it_waits(slow_stack: DevStack) -> None:
    _cold(slow_stack)
    prompt = f"cold and streamed {uuid.uuid4().hex[:6]}"
    key = f"retry-me-{uuid.uuid4().hex}"
    body = {"model": MODEL, "messages": [{"role": "user", "content": prompt}], "max_tokens": 6, "stream": True}
    headers = {"Authorization": f"Bearer {slow_stack.api_key}", "Idempotency-Key": key}
    with (
        httpx.Client(timeout=60) as http,
        http.stream("POST", slow_stack.url + "/v1/chat/completions", json=body, headers=headers) as answer,
    ):
        assert answer.status_code == 200 and answer.headers["x-gpuq-job-id"].startswith("job_")
        lines = [line for line in answer.iter_lines() if line]
    comments = [line for line in lines if line.startswith(":")]
    assert any(line.startswith(": gpuq waiting: ") for line in comments), lines[:5]
    assert lines[-1] == "data: [DONE]"
    # The same Idempotency-Key again: the same job, its output replayed, nothing generated twice.
    with openai.OpenAI(base_url=slow_stack.url + "/v1", api_key=slow_stack.api_key) as sdk:
        again = sdk.chat.completions.create(
            model=MODEL,
            messages=[{"role": "user", "content": prompt}],
            max_tokens=6,
            stream=True,
            extra_headers={"Idempotency-Key": key},
        )
        text = "".join(c.choices[0].delta.content or "" for c in again if c.choices)
    assert text == fake_completion_text(MODEL, prompt, 6) and _generations(slow_stack, prompt) == 1


def test_32_streams_through_one_cold_start_while_the_process_answers(slow_stack: DevStack) -> None:
    _cold(slow_stack)
    run = uuid.uuid4().hex[:6]
    done = threading.Event()
    latencies: list[float] = []

    def probe() -> None:  # what a dashboard or a poller asks meanwhile
        with httpx.Client(timeout=30, headers={"Authorization": f"Bearer {slow_stack.api_key}"}) as http:
            while not done.wait(0.2):
                started = time.monotonic()
                assert http.get(slow_stack.url + "/v1/models").status_code == 200
                latencies.append(time.monotonic() - started)

    def one(i: int) -> str:
        with openai.OpenAI(base_url=slow_stack.url + "/v1", api_key=slow_stack.api_key) as sdk:
            stream = sdk.chat.completions.create(
                model=MODEL, messages=[{"role": "user", "content": f"{run} {i}"}], max_tokens=5, stream=True
            )
            return "".join(c.choices[0].delta.content or "" for c in stream if c.choices)

    watcher = threading.Thread(target=probe)
    watcher.start()
    try:
        with ThreadPoolExecutor(32) as pool:
            texts = list(pool.map(one, range(32)))
    finally:
        done.set()
        watcher.join()
    assert texts == [fake_completion_text(MODEL, f"{run} {i}", 5) for i in range(32)]
    assert latencies and statistics.median(latencies) < 0.5, latencies  # not starved by 32 held streams
    print(
        f"\n/v1/models while 32 streams waited: p50 {statistics.median(latencies) * 1000:.0f} ms, "
        f"max {max(latencies) * 1000:.0f} ms over {len(latencies)} requests"
    )
