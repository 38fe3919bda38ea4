"""Two pools serving different models on the real stack: each job lands in its model's pool, a model no
pool serves is refused at submit and starts nothing, and the registry and model list say so."""

from __future__ import annotations

from pathlib import Path

import pytest

from shared.errors import ApiError
from shared.tools import cli
from tests.fleet.conftest import StackFactory, client_for, up_boxes
from tests.servers import wait_until

POOLS = """
[pools.small]
models = ["llama3.2:1b"]
max_boxes = 1
idle_policy = "fixed"
idle_grace_s = 1.0
cold_start_s = 2.0

[pools.chat]
models = ["qwen2.5:0.5b"]
max_boxes = 2
jobs_per_box = 2
idle_policy = "fixed"
idle_grace_s = 1.0
cold_start_s = 2.0
"""


def test_each_job_lands_in_its_models_pool_and_an_unserved_model_starts_nothing(
    fleet_stack: StackFactory, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    pools = tmp_path / "pools.toml"
    pools.write_text(POOLS)
    stack = fleet_stack(pools_file=pools)
    client = client_for(stack)

    assert client.models() == {
        "object": "list",
        "data": [
            {"id": "llama3.2:1b", "object": "model", "created": 0, "owned_by": "small"},
            {"id": "qwen2.5:0.5b", "object": "model", "created": 0, "owned_by": "chat"},
        ],
    }
    with pytest.raises(ApiError) as refused:
        client.submit({"model": "llama3.1:8b", "prompt": "not served here"})
    assert (refused.value.status, refused.value.code) == (422, "model_not_served")
    assert "llama3.2:1b, qwen2.5:0.5b" in str(refused.value)
    assert stack.boxes() == [] and not up_boxes(stack)  # no box ever started for it

    small = client.submit({"model": "llama3.2:1b", "prompt": "to the small pool"})
    chat = client.submit({"model": "qwen2.5:0.5b", "messages": [{"role": "user", "content": "to the chat pool"}]})
    assert client.wait(small["id"], timeout_s=60)["instance_id"] == "small-1"
    assert client.wait(chat["id"], timeout_s=60)["instance_id"] == "chat-1"

    listed = client.instances(pool="chat")["instances"]
    assert [(i["id"], i["pool"], i["provider"], i["models"]) for i in listed] == [
        ("chat-1", "chat", "local", ["qwen2.5:0.5b"]),
        ("chat-2", "chat", "local", ["qwen2.5:0.5b"]),
    ]
    assert listed[1]["state"] == "stopped"  # one job needed one box of the two
    assert listed[0]["start_reason"]["reason"] == "work waits and no box is up"
    monkeypatch.setenv("GPUQ_URL", stack.url)
    monkeypatch.setenv("GPUQ_API_KEY", stack.api_key)
    assert cli.main(["instances", "--pool", "chat"]) == 0
    printed = capsys.readouterr().out.splitlines()
    assert printed[0].split()[:4] == ["box", "pool", "provider", "state"]
    assert [line.split()[:4] for line in printed[1:]] == [
        ["chat-1", "chat", "local", listed[0]["state"]],
        ["chat-2", "chat", "local", "stopped"],
    ]
    with pytest.raises(ApiError) as bad_pool:
        client.instances(pool="nope")
    assert (bad_pool.value.status, bad_pool.value.code) == (422, "unknown_pool")
    wait_until(lambda: not up_boxes(stack), 30, "both pools' boxes to stop once idle")
    client.close()
