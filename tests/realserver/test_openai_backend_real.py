"""The agent's ``openai`` backend against a real model server, llama-cpp-python's ``llama_cpp.server`` on the
tiny random-weight llama, over real sockets: the agent in-process (as in tests/integration/test_agent_openai.py,
a real report receiver in front), then a whole ``gpuq dev`` stack whose box talks to the real server.

The reference for every text and counter is the same request made straight to the server with the OpenAI
SDK: with ``temperature`` 0 the server samples greedily, so the tiny model answers the same words each time.
The server runs one generation at a time, and a request that arrives while it streams cuts that stream
short (``--interrupt_requests``, on by default): each reference call is made once the agent's job is over.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import openai
import pytest
from openai.types.chat import ChatCompletionMessageParam

from agent.app import build_app
from shared.fakes.serving import serve_app_in_thread
from shared.models import JobError
from shared.settings import AgentSettings
from shared.tools.client import JobsClient
from shared.tools.devstack import free_port
from tests.integration.test_agent import SECRET, ReportSink, job, ready, signed_post
from tests.integration.test_agent_openai import final_of, text_of
from tests.realserver.conftest import RealServer, llama_python, running, server_argv
from tests.servers import instance_stopped, start_stack, wait_until

LONG_CTX = 2048  # a generation that fills it streams ~2,000 tokens: seconds here, long enough to act mid-way
LONG = {"num_predict": 5000, "temperature": 0}  # ends when the context is full (the server caps max_tokens)


@pytest.fixture
def sink() -> Iterator[ReportSink]:
    s = ReportSink()
    yield s
    s.server.shutdown()
    s.server.server_close()


@pytest.fixture
def agent_of() -> Iterator[Callable[[RealServer], str]]:
    """Start agents on the openai backend in front of a real server, ready; each stops after the test."""
    with contextlib.ExitStack() as stack:

        def start(server: RealServer) -> str:
            settings = AgentSettings(
                secret=SECRET,
                instance_id="real-box",
                provider="none",
                backend="openai",
                backend_url=server.base_url,
                preload_models=server.model,
                idle_grace_s=3600,
                report_interval_s=0.05,
                max_concurrent_jobs=16,
            )
            url = stack.enter_context(serve_app_in_thread(build_app(settings)))
            wait_until(lambda: ready(url), 30, "the agent ready on the real server")
            return url

        yield start


@pytest.fixture(scope="module")
def long_server(tiny_model: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[RealServer]:
    """A server of its own with a longer context, for streams that run long enough to act on mid-way."""
    log = tmp_path_factory.mktemp("llama-long") / "server.log"
    with running(server_argv(llama_python(), tiny_model, free_port(), n_ctx=LONG_CTX), log) as server:
        yield server


def sdk(server: RealServer) -> openai.OpenAI:
    return openai.OpenAI(base_url=server.base_url + "/v1", api_key="unused", max_retries=0, timeout=60)


def disconnects(server: RealServer) -> int:
    """How many times the server saw a client go mid-stream and stopped generating for it (its own log line)."""
    return server.log.read_text(errors="replace").count("Disconnected from client")


def submit(agent: str, sink: ReportSink, prompt: str, server: RealServer, **fields: Any) -> str:
    spec = job(sink, prompt, model=server.model, **fields)
    assert signed_post(agent, "/v1/jobs", spec.model_dump_json().encode()).status_code == 202
    return spec.job_id


def test_a_streamed_chat_job_brings_the_text_the_server_gives_the_same_request(
    agent_of: Callable[[RealServer], str], sink: ReportSink, real_server: RealServer
) -> None:
    agent = agent_of(real_server)
    messages: list[ChatCompletionMessageParam] = [
        {"role": "system", "content": "be brief"},
        {"role": "user", "content": "hello world"},
    ]
    options = {"num_predict": 200, "temperature": 0, "seed": 5}
    spec = job(sink, "", model=real_server.model, messages=messages, options=options)
    lines = [json.loads(x) for x in signed_post(agent, "/v1/stream", spec.model_dump_json().encode()).text.splitlines()]
    assert lines[-1] == {"done": True, "status": "succeeded"}
    texts = [line["response"] for line in lines[:-1]]
    assert len(texts) > 1  # the tokens came as they were made, not as one answer at the end
    with sdk(real_server) as client:
        direct = client.chat.completions.create(
            model=real_server.model, messages=messages, max_tokens=200, temperature=0, seed=5
        )
    assert "".join(texts) == direct.choices[0].message.content and direct.usage is not None
    result = sink.final(spec.job_id)["result"]
    assert sink.text(spec.job_id) == "".join(texts)
    assert result["eval_count"] == direct.usage.completion_tokens == 200
    assert result["done_reason"] == direct.choices[0].finish_reason == "length"


def test_a_jobs_counters_are_the_servers_where_it_gives_them_and_unknown_where_it_does_not(
    agent_of: Callable[[RealServer], str], sink: ReportSink, real_server: RealServer
) -> None:
    agent = agent_of(real_server)
    prompt_job = submit(agent, sink, "the cat and", real_server, options={"num_predict": 40, "temperature": 0})
    final = sink.final(prompt_job)
    # No limit: the server goes on until its context is full; the agent counts every token of it.
    messages: list[ChatCompletionMessageParam] = [{"role": "user", "content": "go on"}]
    chat_job = submit(agent, sink, "", real_server, messages=messages, options={"temperature": 0})
    chat = sink.final(chat_job)
    assert final["outcome"] == chat["outcome"] == "succeeded"
    with sdk(real_server) as client:
        direct = client.completions.create(model=real_server.model, prompt="the cat and", max_tokens=40, temperature=0)
        unlimited = client.chat.completions.create(model=real_server.model, messages=messages, temperature=0)
    assert direct.usage is not None and unlimited.usage is not None
    assert sink.text(prompt_job) == direct.choices[0].text
    assert final["result"]["eval_count"] == direct.usage.completion_tokens == 40
    assert final["result"]["done_reason"] == direct.choices[0].finish_reason == "length"
    assert sink.text(chat_job) == unlimited.choices[0].message.content
    assert chat["result"]["eval_count"] == unlimited.usage.completion_tokens > 400
    assert unlimited.usage.prompt_tokens + unlimited.usage.completion_tokens == 512  # the whole context
    # Its streams carry no usage (stream_options.include_usage is ignored): the prompt's size is not
    # known to the agent, and it says so rather than guess.
    assert final["result"].get("prompt_eval_count") is None and chat["result"].get("prompt_eval_count") is None


def test_a_job_cancelled_mid_stream_keeps_its_partial_text_and_the_server_stops_generating(
    agent_of: Callable[[RealServer], str], sink: ReportSink, long_server: RealServer
) -> None:
    agent = agent_of(long_server)
    before = disconnects(long_server)
    sink.cancel_after_chunks = 1
    job_id = submit(agent, sink, "the cat and", long_server, options=LONG)
    assert sink.final(job_id, timeout=60)["outcome"] == "cancelled"
    wait_until(lambda: disconnects(long_server) > before, 30, "the server saw the agent go")
    partial = sink.text(job_id)
    with sdk(long_server) as client:  # as far as the job got, and one token further
        direct = client.completions.create(
            model=long_server.model, prompt="the cat and", max_tokens=len(partial) + 1, temperature=0
        )
    text = direct.choices[0].text
    assert partial and text.startswith(partial) and len(text) > len(partial)


def test_a_stream_cut_short_by_another_request_fails_the_attempt_as_busy_not_as_a_success(
    agent_of: Callable[[RealServer], str], sink: ReportSink, long_server: RealServer
) -> None:
    agent = agent_of(long_server)
    long_job = submit(agent, sink, "the cat and", long_server, options=LONG)
    wait_until(lambda: bool(sink.text(long_job)), 30, "the long job's first output")
    short_job = submit(agent, sink, "hello", long_server, options={"num_predict": 8, "temperature": 0})
    cut, short = sink.final(long_job, timeout=60), sink.final(short_job, timeout=60)
    # The server ended the first stream with [DONE] and no finish_reason the moment the second request came.
    assert cut["outcome"] == "failed" and cut["error"]["code"] == "model_server_busy"
    assert "no finish_reason" in cut["error"]["message"] and JobError(**cut["error"]).is_retryable()
    assert sink.text(long_job)
    with sdk(long_server) as client:
        direct = client.completions.create(model=long_server.model, prompt="hello", max_tokens=8, temperature=0)
    assert short["outcome"] == "succeeded" and sink.text(short_job) == direct.choices[0].text


def test_a_server_killed_mid_stream_fails_the_attempt_as_unreachable(
    agent_of: Callable[[RealServer], str], sink: ReportSink, tiny_model: Path, tmp_path: Path
) -> None:
    argv = server_argv(llama_python(), tiny_model, free_port(), n_ctx=LONG_CTX)
    with running(argv, tmp_path / "server.log") as server:
        agent = agent_of(server)
        job_id = submit(agent, sink, "the cat and", server, options=LONG)
        wait_until(lambda: bool(text_of(sink, job_id, 1)), 30, "the first output")
        os.killpg(server.process.pid, signal.SIGKILL)  # the model server and all it started die mid-stream
        final = final_of(sink, job_id, 1)
        assert server.process.wait(timeout=10) == -signal.SIGKILL
    assert final["outcome"] == "failed" and final["error"]["code"] == "model_server_unreachable"
    assert JobError(**final["error"]).is_retryable()  # the control plane re-drives it (shared/jobs/reports.py)
    assert text_of(sink, job_id, 1)  # the partial output is kept


def test_gpuq_dev_runs_a_job_on_a_box_whose_model_server_is_the_real_one(
    real_server: RealServer, tmp_path: Path
) -> None:
    stack = start_stack(
        tmp_path / "stack",
        backend="openai",
        models=real_server.model,
        overrides={"openai_backend_url": real_server.base_url},  # GPUQ_OPENAI_BACKEND_URL
    )
    try:
        assert stack.openai_url == real_server.base_url
        assert not (stack.log_dir / "fake-openai.log").exists()  # no stand-in started
        messages: list[ChatCompletionMessageParam] = [{"role": "user", "content": "the queue is ready"}]
        body = {"model": real_server.model, "messages": messages, "options": {"num_predict": 12, "temperature": 0}}
        with JobsClient(stack.url, stack.api_key) as client:
            done = client.wait(client.submit(body)["id"], timeout_s=90)
        with sdk(real_server) as sdk_client:
            direct = sdk_client.chat.completions.create(
                model=real_server.model,
                messages=messages,
                max_tokens=12,
                temperature=0,
            )
        assert done["status"] == "succeeded" and done["instance_id"] == "local-1"
        assert done["output"] == direct.choices[0].message.content
        assert done["result"]["eval_count"] == 12 and done["result"]["done_reason"] == "length"
        wait_until(lambda: instance_stopped(stack), 60, "the box stopped once idle")
        assert stack.boxes() == [("local-1", "stopped", 1)]
    finally:
        stack.stop()
