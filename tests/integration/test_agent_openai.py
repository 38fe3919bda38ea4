"""The agent's ``openai`` backend over real sockets: the OpenAI-compatible stand-in behind it (in a thread,
or a process that is killed mid-stream), a real report receiver in front."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from agent.app import build_app
from shared.fakes.ollama import FakeOllamaConfig, fake_completion_text, fake_embedding, prompt_key
from shared.fakes.openai_server import FakeOpenAIServer, serve_in_thread
from shared.fakes.serving import serve_app_in_thread
from shared.settings import AgentSettings
from shared.tools.devstack import free_port
from tests.integration.test_agent import SECRET, ReportSink, job, ready, signed_post
from tests.servers import wait_until

MODEL = "llama3.2:1b"
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def server() -> Iterator[FakeOpenAIServer]:
    with serve_in_thread(FakeOllamaConfig(token_delay_s=0.002, load_delay_s=0.05)) as srv:
        yield srv


@pytest.fixture
def sink() -> Iterator[ReportSink]:
    s = ReportSink()
    yield s
    s.server.shutdown()
    s.server.server_close()


@pytest.fixture
def agent_of() -> Iterator[Callable[..., str]]:
    """Start agents on the openai backend, in front of the server at ``url``; each stops after the test."""
    with contextlib.ExitStack() as stack:

        def start(url: str, **settings: Any) -> str:
            fields: dict[str, Any] = {
                "secret": SECRET,
                "instance_id": "test-box",
                "provider": "none",
                "backend": "openai",
                "backend_url": url,
                "preload_models": MODEL,
                "idle_grace_s": 3600,
                "report_interval_s": 0.05,
                "max_concurrent_jobs": 16,
                **settings,
            }
            return stack.enter_context(serve_app_in_thread(build_app(AgentSettings(**fields))))

        yield start


@pytest.fixture
def agent(agent_of: Callable[..., str], server: FakeOpenAIServer) -> str:
    url = agent_of(server.url + "/v1")  # the OpenAI SDK's base URL form works too
    wait_until(lambda: ready(url), 10, "agent ready")
    return url


def stats(server: FakeOpenAIServer | str) -> dict[str, Any]:
    url = server if isinstance(server, str) else server.url
    body: dict[str, Any] = httpx.get(url + "/__fake__/stats").json()
    return body


def final_of(sink: ReportSink, job_id: str, attempt: int) -> dict[str, Any]:
    def found() -> dict[str, Any] | None:
        return next(
            (r for r in sink.reports if r["job_id"] == job_id and r["attempt"] == attempt and r.get("outcome")), None
        )

    with sink.cond:
        assert sink.cond.wait_for(lambda: found() is not None, 20)
    return found() or {}


def text_of(sink: ReportSink, job_id: str, attempt: int) -> str:
    chunks = {
        c["seq"]: c["text"]
        for r in sink.reports
        if r["job_id"] == job_id and r["attempt"] == attempt
        for c in r.get("chunks", [])
    }
    return "".join(text for _, text in sorted(chunks.items()))


def test_prompt_and_chat_jobs_report_the_exact_text_and_the_servers_own_usage(
    agent: str, sink: ReportSink, server: FakeOpenAIServer
) -> None:
    prompt = f"complete {uuid.uuid4()}"
    spec = job(sink, prompt, options={"num_predict": 12})
    assert signed_post(agent, "/v1/jobs", spec.model_dump_json().encode()).status_code == 202
    final = sink.final(spec.job_id)
    assert final["outcome"] == "succeeded" and sink.text(spec.job_id) == fake_completion_text(MODEL, prompt, 12)
    usage = httpx.post(server.url + "/v1/completions", json={"model": MODEL, "prompt": prompt, "max_tokens": 12})
    assert final["result"]["eval_count"] == usage.json()["usage"]["completion_tokens"] == 12
    assert final["result"]["prompt_eval_count"] == usage.json()["usage"]["prompt_tokens"]
    assert final["result"]["done_reason"] == "length" and final["result"]["eval_duration_ns"] > 0

    question = f"chat {uuid.uuid4()}"
    chat = job(sink, "", messages=[{"role": "system", "content": "short"}, {"role": "user", "content": question}])
    lines = [json.loads(x) for x in signed_post(agent, "/v1/stream", chat.model_dump_json().encode()).text.splitlines()]
    assert lines[-1] == {"done": True, "status": "succeeded"}
    assert "".join(line["response"] for line in lines[:-1]) == fake_completion_text(MODEL, question, 24)
    result = sink.final(chat.job_id)["result"]
    assert result["eval_count"] == 24 and result["done_reason"] == "stop"
    seen = stats(server)["generations_by_path"]
    assert seen["/v1/chat/completions"] == 1 and seen["/v1/completions"] == 2


def test_the_agent_is_ready_once_the_server_has_loaded_and_fails_on_a_model_it_does_not_serve(
    agent_of: Callable[..., str],
) -> None:
    with serve_in_thread(FakeOllamaConfig(load_delay_s=1.0)) as slow:
        url = agent_of(slow.url)
        assert httpx.get(url + "/health").json()["status"] == "starting_instance"
        wait_until(lambda: ready(url), 10, "agent ready after the server loaded")
        assert httpx.get(slow.url + "/health").status_code == 200
        other = agent_of(slow.url, preload_models="mistral-7b-instruct")
        wait_until(lambda: httpx.get(other + "/health").json()["status"] != "starting_instance", 10, "verdict")
        health = httpx.get(other + "/health").json()
        assert health["status"] == "model_server_unavailable"
        assert "does not serve 'mistral-7b-instruct'" in health["error"]["message"]


def test_cancel_mid_stream_stops_the_generation_and_keeps_the_partial_output(
    agent: str, sink: ReportSink, server: FakeOpenAIServer
) -> None:
    sink.cancel_after_chunks = 1
    spec = job(sink, "long one", options={"num_predict": 5000})
    assert signed_post(agent, "/v1/jobs", spec.model_dump_json().encode()).status_code == 202
    assert sink.final(spec.job_id)["outcome"] == "cancelled"
    partial = sink.text(spec.job_id)
    assert partial and fake_completion_text(MODEL, "long one", 5000).startswith(partial)
    wait_until(lambda: stats(server)["generations_interrupted"] == 1, 10, "the server stopped generating")


def _fault(server: FakeOpenAIServer, **fields: Any) -> None:
    httpx.post(server.url + "/__fake__/faults", json=fields).raise_for_status()


def test_the_servers_refusals_become_the_jobs_error_codes(
    agent: str, sink: ReportSink, server: FakeOpenAIServer
) -> None:
    def failed(spec_fields: dict[str, Any]) -> dict[str, Any]:
        spec = job(sink, f"fails {uuid.uuid4()}", **spec_fields)
        assert signed_post(agent, "/v1/jobs", spec.model_dump_json().encode()).status_code == 202
        final = sink.final(spec.job_id)
        assert final["outcome"] == "failed"
        return dict(final["error"])

    unknown = failed({"model": "no-such-model"})
    assert unknown == {"code": "model_not_found", "message": "The model `no-such-model` does not exist."}
    _fault(server, error_status=503, error_message="server overloaded")
    assert failed({}) == {"code": "model_server_busy", "message": "server overloaded"}
    too_long = failed({"options": {"num_predict": 9000}})
    assert (
        too_long["code"] == "model_server_error" and "400: This model's maximum context length" in too_long["message"]
    )
    _fault(server, error_after_tokens=3, error_message="CUDA error: device-side assert triggered")
    mid = failed({})
    assert mid == {"code": "model_server_error", "message": "CUDA error: device-side assert triggered"}


def test_options_it_cannot_send_fail_the_job_naming_them_before_any_request(
    agent: str, sink: ReportSink, server: FakeOpenAIServer
) -> None:
    prompt = f"mapped {uuid.uuid4()}"
    options = {"num_predict": 5, "temperature": 0.2, "top_p": 0.9, "stop": ["\n"], "seed": 7}
    spec = job(sink, prompt, options=options | {"presence_penalty": 0.1, "frequency_penalty": 0.1})
    assert signed_post(agent, "/v1/jobs", spec.model_dump_json().encode()).status_code == 202
    assert sink.final(spec.job_id)["outcome"] == "succeeded" and sink.text(spec.job_id) == fake_completion_text(
        MODEL, prompt, 5
    )
    started = stats(server)["generations_started"]
    refused = job(sink, "refused", options={"num_predict": 5, "top_k": 40})
    assert signed_post(agent, "/v1/jobs", refused.model_dump_json().encode()).status_code == 202
    error = sink.final(refused.job_id)["error"]
    assert error["code"] == "unsupported_option" and "'top_k'" in error["message"]
    image = job(sink, "", messages=[{"role": "user", "content": "look", "images": ["aGk="]}])
    assert signed_post(agent, "/v1/jobs", image.model_dump_json().encode()).status_code == 202
    error = sink.final(image.job_id)["error"]
    assert error == {
        "code": "unsupported_option",
        "message": "images in messages[0] is not supported by the openai backend",
    }
    assert stats(server)["generations_started"] == started
    assert prompt_key("refused") not in stats(server)["generations_by_prompt"]


def test_embeddings_go_through_v1_embeddings(agent: str, sink: ReportSink) -> None:
    spec = job(sink, "", input=["first text", "second text"])
    assert signed_post(agent, "/v1/jobs", spec.model_dump_json().encode()).status_code == 202
    final = sink.final(spec.job_id)
    assert final["outcome"] == "succeeded" and final["result"]["prompt_eval_count"] == 4
    vectors = json.loads(sink.text(spec.job_id))["embeddings"]
    assert vectors == [fake_embedding(MODEL, "first text"), fake_embedding(MODEL, "second text")]


@contextlib.contextmanager
def server_process(port: int) -> Iterator[subprocess.Popen[bytes]]:
    cmd = [sys.executable, "-m", "shared.fakes.openai_server", "--port", str(port), "--load-delay-ms", "0"]
    cmd += ["--token-delay-ms", "5"]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    with subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.DEVNULL) as proc:
        try:
            wait_until(lambda: _answers(f"http://127.0.0.1:{port}/health"), 15, "model server up")
            yield proc
        finally:
            if proc.poll() is None:
                proc.kill()
            proc.wait(timeout=10)


def _answers(url: str) -> bool:
    with contextlib.suppress(httpx.HTTPError):
        return httpx.get(url, timeout=1).status_code == 200
    return False


def test_a_server_killed_mid_stream_fails_the_attempt_and_its_redrive_succeeds(
    agent_of: Callable[..., str], sink: ReportSink
) -> None:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    spec = job(sink, f"killed {uuid.uuid4()}", options={"num_predict": 400})
    with server_process(port) as first:
        agent = agent_of(url)
        wait_until(lambda: ready(agent), 15, "agent ready")
        assert signed_post(agent, "/v1/jobs", spec.model_dump_json().encode()).status_code == 202
        wait_until(lambda: bool(text_of(sink, spec.job_id, 1)), 15, "the first output")
        os.kill(first.pid, signal.SIGKILL)  # the model server dies mid-stream
        final = final_of(sink, spec.job_id, 1)
    assert final["outcome"] == "failed" and final["error"]["code"] == "model_server_unreachable"
    expected = fake_completion_text(MODEL, spec.prompt or "", 400)
    partial = text_of(sink, spec.job_id, 1)
    assert partial and expected.startswith(partial) and partial != expected
    again = spec.model_copy(update={"attempt": 2, "report_token": f"2.tok-{spec.job_id}"})
    with server_process(port):  # back (a supervisor restarts it); the control plane re-drives the job
        assert signed_post(agent, "/v1/jobs", again.model_dump_json().encode()).status_code == 202
        assert final_of(sink, spec.job_id, 2)["outcome"] == "succeeded"
    assert text_of(sink, spec.job_id, 2) == expected
