"""The Batch API with the official SDK: upload a JSONL file, start a batch, wait, read the output and error
files. Each good line is a gpuq job; bad lines are reported per line; validation comes before any box."""

from __future__ import annotations

import io
import json
import time
import uuid

import openai

from shared.fakes.ollama import fake_completion_text
from shared.tools.devstack import DevStack
from tests.servers import MODEL


def _line(custom_id: str, content: str, **extra: object) -> str:
    body = {"model": MODEL, "messages": [{"role": "user", "content": content}], "max_tokens": 5}
    return json.dumps({"custom_id": custom_id, "method": "POST", "url": "/v1/chat/completions", "body": body} | extra)


def _wait(sdk: openai.OpenAI, batch_id: str, timeout_s: float = 60) -> openai.types.Batch:
    deadline = time.monotonic() + timeout_s
    while True:
        batch = sdk.batches.retrieve(batch_id)
        if batch.status in ("completed", "cancelled", "failed", "expired") or time.monotonic() > deadline:
            return batch
        time.sleep(0.2)


def _sdk(stack: DevStack) -> openai.OpenAI:
    return openai.OpenAI(base_url=stack.url + "/v1", api_key=stack.api_key, max_retries=0)


def test_a_batch_runs_each_good_line_as_a_job_and_reports_bad_lines(stack: DevStack) -> None:
    run = uuid.uuid4().hex[:6]
    lines = [_line(f"q{i}", f"batch {run} {i}") for i in range(3)]
    lines += [
        "{not json",
        _line("q1", "a duplicate custom_id"),
        json.dumps(
            {
                "custom_id": "unserved",
                "method": "POST",
                "url": "/v1/chat/completions",
                "body": {"model": "llama3.1:8b", "messages": [{"role": "user", "content": "x"}]},
            }
        ),
        _line("wrong-url", "x", url="/v1/embeddings"),
    ]
    with _sdk(stack) as sdk:
        upload = sdk.files.create(file=("in.jsonl", io.BytesIO("\n".join(lines).encode())), purpose="batch")
        assert upload.purpose == "batch" and upload.bytes > 0 and sdk.files.retrieve(upload.id).id == upload.id
        batch = sdk.batches.create(input_file_id=upload.id, endpoint="/v1/chat/completions", completion_window="24h")
        assert batch.status == "in_progress" and batch.request_counts is not None
        assert batch.request_counts.total == 7
        done = _wait(sdk, batch.id)
        assert done.status == "completed" and done.request_counts is not None
        assert (done.request_counts.completed, done.request_counts.failed) == (3, 4)
        assert done.output_file_id and done.error_file_id
        output = [json.loads(x) for x in sdk.files.content(done.output_file_id).text.splitlines()]
        errors = [json.loads(x) for x in sdk.files.content(done.error_file_id).text.splitlines()]
        assert next(b.id for b in sdk.batches.list().data) == batch.id
    by_id = {o["custom_id"]: o for o in output}
    assert sorted(by_id) == ["q0", "q1", "q2"]
    for i in range(3):
        answer = by_id[f"q{i}"]["response"]
        assert answer["status_code"] == 200
        assert answer["body"]["choices"][0]["message"]["content"] == fake_completion_text(MODEL, f"batch {run} {i}", 5)
    assert sorted(e["error"]["line"] for e in errors) == [4, 5, 6, 7]
    assert {e["custom_id"] for e in errors} == {None, "q1", "unserved", "wrong-url"}
    assert any(e["error"]["code"] == "model_not_served" for e in errors)


def test_a_batch_of_only_bad_lines_starts_no_box(stack: DevStack) -> None:
    starts = stack.box_starts()
    with _sdk(stack) as sdk:
        upload = sdk.files.create(file=("bad.jsonl", io.BytesIO(b"{}\n[1, 2]\n")), purpose="batch")
        batch = sdk.batches.create(input_file_id=upload.id, endpoint="/v1/chat/completions", completion_window="24h")
        done = _wait(sdk, batch.id, timeout_s=10)
    assert done.status == "completed" and done.request_counts is not None and done.request_counts.failed == 2
    assert done.output_file_id is None and done.error_file_id
    assert stack.box_starts() == starts and not stack.box_running()


def test_cancelling_a_batch_cancels_its_waiting_jobs(stack: DevStack) -> None:
    lines = [_line(f"c{i}", f"cancel me {uuid.uuid4().hex} {i}") for i in range(4)]
    with _sdk(stack) as sdk:
        upload = sdk.files.create(file=("c.jsonl", io.BytesIO("\n".join(lines).encode())), purpose="batch")
        batch = sdk.batches.create(input_file_id=upload.id, endpoint="/v1/chat/completions", completion_window="24h")
        cancelled = sdk.batches.cancel(batch.id)
        assert cancelled.status in ("cancelling", "cancelled")
        done = _wait(sdk, batch.id)
        assert done.status == "cancelled" and done.request_counts is not None
        assert done.request_counts.completed + done.request_counts.failed == 4
        try:
            sdk.batches.cancel(batch.id)
            raise AssertionError("a finished batch cannot be cancelled again")
        except openai.ConflictError as again:
            assert again.code == "batch_finished"
