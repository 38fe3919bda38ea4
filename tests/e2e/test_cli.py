"""The `gpuq` command against the real stack, as a user in a pipe sees it: plain text, --json, one error line."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest

from shared.tools import cli
from shared.tools.devstack import DevStack
from tests.servers import MODEL

Gpuq = Callable[..., tuple[int, str, str]]


@pytest.fixture
def gpuq(stack: DevStack, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> Gpuq:
    monkeypatch.setenv("GPUQ_URL", stack.url)
    monkeypatch.setenv("GPUQ_API_KEY", stack.api_key)

    def run(*argv: str) -> tuple[int, str, str]:
        code = cli.main(list(argv))
        out = capsys.readouterr()
        return code, out.out, out.err

    return run


def test_submit_a_chat_from_a_file_with_options_then_read_its_history(gpuq: Gpuq, tmp_path: Path) -> None:
    messages = tmp_path / "chat.json"
    messages.write_text(json.dumps([{"role": "user", "content": "count to five"}]))
    code, out, err = gpuq("submit", "--model", MODEL, "--messages-file", str(messages), "--option", "num_predict=5")
    assert code == 0, err
    job_id = err.split()[1]  # "job <id> queued"
    assert "succeeded" in err.splitlines()[-1]
    assert out.strip()  # the chat's answer

    code, out, _ = gpuq("status", job_id)
    job = json.loads(out)
    assert (job["status"], job["result"]["eval_count"]) == ("succeeded", 5)

    code, out, _ = gpuq("logs", job_id)
    lines = out.splitlines()
    assert lines[0] == f"job {job_id} ({MODEL})"
    assert [line.split()[1] for line in lines[2:]] == ["queued", "started", "succeeded"]
    code, out, _ = gpuq("logs", job_id, "--json")
    assert [e["event"] for e in json.loads(out)] == ["queued", "started", "succeeded"]


def test_read_commands_answer_json_and_a_refusal_is_one_error_line(gpuq: Gpuq) -> None:
    code, out, _ = gpuq("cost", "--json")
    assert code == 0 and {"billed_usd", "cold_starts"} <= set(json.loads(out))
    code, out, _ = gpuq("instances", "--json")
    assert code == 0 and [b["id"] for b in json.loads(out)] == ["local-1"]
    code, out, err = gpuq("status", "job_doesnotexist")
    assert code == 2 and out == ""
    assert err.startswith("error: 404 job_not_found") and len(err.splitlines()) == 1
    code, _, err = gpuq("submit", "--model", "llama3.1:8b", "hello")
    assert code == 2 and "model_not_served" in err
