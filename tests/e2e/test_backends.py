"""Both backends end to end: ``gpuq dev --backend openai`` runs its box against the OpenAI-compatible stand-in
(jobs and the OpenAI front door through it), and a pools file with one pool per backend sends each job to
the server its pool names."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import openai
import pytest

from shared.fakes.ollama import fake_completion_text
from shared.tools.client import JobsClient
from shared.tools.devstack import DevStack, free_port
from tests.servers import MODEL, start_stack

OTHER = "qwen2.5:0.5b"


def _generations(url: str) -> dict[str, int]:
    stats: dict[str, dict[str, int]] = httpx.get(url + "/__fake__/stats", timeout=10).json()
    return stats["generations_by_path"]


@pytest.fixture
def dev_openai(tmp_path: Path) -> Iterator[tuple[str, str, str]]:
    """`gpuq dev --backend openai` in its own process: its URL, API key and model server URL."""
    port = free_port()
    argv = [sys.executable, "-m", "shared.tools.cli", "dev", "--backend", "openai", "--port", str(port)]
    argv += ["--data-dir", str(tmp_path), "--idle-grace", "5"]
    proc = subprocess.Popen(argv, env=dict(os.environ), stdout=subprocess.PIPE, text=True, start_new_session=True)
    assert proc.stdout is not None
    server = ""
    for line in proc.stdout:  # the banner ends with the model server line: the stack is up then
        if line.startswith("gpuq dev: model server"):
            server = line.split()[4]
            break
    try:
        assert line.split()[5:6] == ["(OpenAI-compatible);"], line
        yield f"http://127.0.0.1:{port}", (tmp_path / "dev-api-key").read_text(), server
    finally:
        proc.terminate()
        assert proc.wait(timeout=60) == 0
        proc.stdout.close()


def test_gpuq_dev_with_the_openai_backend_runs_jobs_and_the_openai_front_door(
    dev_openai: tuple[str, str, str],
) -> None:
    url, key, server = dev_openai
    with JobsClient(url, key) as client:
        job = client.submit({"model": MODEL, "prompt": "through vllm", "options": {"num_predict": 9}})
        chat = client.submit({"model": MODEL, "messages": [{"role": "user", "content": "and chat"}]})
        done, chatted = client.wait(job["id"], timeout_s=90), client.wait(chat["id"], timeout_s=90)
    assert done["status"] == "succeeded" and done["output"] == fake_completion_text(MODEL, "through vllm", 9)
    assert done["result"]["eval_count"] == 9 and done["result"]["done_reason"] == "length"
    assert chatted["status"] == "succeeded" and chatted["output"] == fake_completion_text(MODEL, "and chat", 24)
    with openai.OpenAI(base_url=url + "/v1", api_key=key, max_retries=0, timeout=90) as sdk:
        answer = sdk.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "sdk"}], max_tokens=4)
    assert answer.choices[0].message.content == fake_completion_text(MODEL, "sdk", 4)
    assert answer.usage is not None and answer.usage.completion_tokens == 4
    assert _generations(server) == {"/v1/completions": 1, "/v1/chat/completions": 2}


@pytest.fixture
def two_backends(tmp_path: Path) -> Iterator[DevStack]:
    pools = tmp_path / "pools.toml"
    pools.write_text(
        "[pools.ollama]\n"
        'provider = "local"\n'
        f'models = ["{MODEL}"]\n'
        "[pools.vllm]\n"
        'provider = "local"\n'
        'backend = "openai"\n'
        f'models = ["{OTHER}"]\n'
    )
    stack = start_stack(tmp_path / "stack", pools_file=pools)
    try:
        yield stack
    finally:
        stack.stop()


def test_each_pool_runs_its_jobs_on_the_backend_it_names(two_backends: DevStack) -> None:
    stack = two_backends
    with JobsClient(stack.url, stack.api_key) as client:
        native = client.submit({"model": MODEL, "prompt": "native", "options": {"num_predict": 5}})
        compatible = client.submit({"model": OTHER, "prompt": "compatible", "options": {"num_predict": 5}})
        finished = [client.wait(j["id"], timeout_s=90) for j in (native, compatible)]
    assert [j["status"] for j in finished] == ["succeeded", "succeeded"]
    assert finished[0]["output"] == fake_completion_text(MODEL, "native", 5)
    assert finished[1]["output"] == fake_completion_text(OTHER, "compatible", 5)
    assert [j["instance_id"] for j in finished] == ["ollama-1", "vllm-1"]
    assert _generations(stack.ollama_url).get("/api/generate") == 1
    assert _generations(stack.openai_url) == {"/v1/completions": 1}
