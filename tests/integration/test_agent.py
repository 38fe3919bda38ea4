"""The agent over real sockets: a real Ollama stand-in behind it, a real report receiver in front."""

from __future__ import annotations

import contextlib
import json
import socket
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import h11
import httpx
import pytest

from agent.app import build_app
from shared.fakes.ollama import FakeOllamaConfig, fake_completion_text, prompt_key, serve_in_thread
from shared.fakes.serving import serve_app_in_thread
from shared.jobs.events import AgentJob
from shared.security.signing import RequestSigner
from shared.settings import AgentSettings
from shared.tools.devstack import free_port
from tests.servers import wait_until

SECRET = "agent-test-secret"
MODEL = "llama3.2:1b"


class ReportSink:
    """The control plane's report endpoints, reduced to recording and acknowledging.

    ``POST /v1/jobs/{id}/events`` takes one job's report (bearer token); ``POST /v1/reports`` a box's batch
    (a token per entry). Each report is recorded with its job id and the token it came with.
    """

    def __init__(self) -> None:
        self.reports: list[dict[str, Any]] = []
        self.requests = 0
        self.hold_s = 0.0  # answer each request this late (a slow control plane)
        self.fail_next = 0  # answer this many requests 503, recording nothing (a control plane in trouble)
        self.cancel_after_chunks: int | None = None
        self.cond = threading.Condition()
        sink = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                if self.path == "/v1/reports":
                    entries = [(e["job_id"], f"Bearer {e['token']}", e["report"]) for e in body["reports"]]
                else:
                    entries = [(self.path.split("/")[3], self.headers["Authorization"], body)]
                time.sleep(sink.hold_s)
                acks = []
                with sink.cond:
                    sink.requests += 1
                    if sink.fail_next > 0:
                        sink.fail_next -= 1
                        self.send_response(503)
                        self.send_header("Content-Length", "0")
                        self.end_headers()
                        return
                    for job_id, auth, report in entries:
                        sink.reports.append({"job_id": job_id, "auth": auth, **report})
                        chunks = sum(len(r.get("chunks", [])) for r in sink.reports)
                        cancel = sink.cancel_after_chunks is not None and chunks >= sink.cancel_after_chunks
                        acks.append({"job_id": job_id, "status": "running", "cancel": cancel})
                    sink.cond.notify_all()
                payload = json.dumps({"acks": acks} if self.path == "/v1/reports" else acks[0]).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def log_message(self, format: str, *args: Any) -> None:
                return

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"

    def final(self, job_id: str, timeout: float = 20) -> dict[str, Any]:
        def found() -> dict[str, Any] | None:
            return next((r for r in self.reports if r["job_id"] == job_id and r.get("outcome")), None)

        with self.cond:
            assert self.cond.wait_for(lambda: found() is not None, timeout)
            return found() or {}

    def text(self, job_id: str) -> str:
        chunks = sorted(
            {c["seq"]: c["text"] for r in self.reports if r["job_id"] == job_id for c in r.get("chunks", [])}.items()
        )
        return "".join(text for _, text in chunks)


@pytest.fixture
def ollama() -> Iterator[str]:
    with serve_in_thread(FakeOllamaConfig(token_delay_s=0.002, load_delay_s=0.05)) as server:
        yield server.url


@pytest.fixture
def sink() -> Iterator[ReportSink]:
    s = ReportSink()
    yield s
    s.server.shutdown()
    s.server.server_close()


@pytest.fixture
def agent_of(ollama: str) -> Iterator[Callable[..., str]]:
    """Start agents in front of the Ollama stand-in, with any settings changed; each stops after the test."""
    with contextlib.ExitStack() as stack:

        def start(**settings: Any) -> str:
            fields: dict[str, Any] = {
                "secret": SECRET,
                "instance_id": "test-box",
                "provider": "none",
                "ollama_url": ollama,
                "preload_models": MODEL,
                "idle_grace_s": 3600,
                "report_interval_s": 0.05,
                **settings,
            }
            return stack.enter_context(serve_app_in_thread(build_app(AgentSettings(**fields))))

        yield start


@pytest.fixture
def agent(agent_of: Callable[..., str]) -> str:
    return agent_of(max_concurrent_jobs=16)


def ready(url: str) -> bool:
    return httpx.get(url + "/health").status_code == 200


def job(sink: ReportSink, prompt: str, *, batched: bool = False, **fields: Any) -> AgentJob:
    job_id = f"job_{uuid.uuid4().hex[:12]}"
    return AgentJob.model_validate(
        {
            "job_id": job_id,
            "attempt": 1,
            "model": MODEL,
            "prompt": prompt,
            "timeout_s": 30,
            "report_url": f"{sink.url}/v1/jobs/{job_id}/events",
            "report_token": f"1.tok-{job_id}",
            "reports_url": f"{sink.url}/v1/reports" if batched else None,
            **fields,
        }
    )


def signed_post(url: str, path: str, body: bytes, signer: RequestSigner | None = None) -> httpx.Response:
    headers = (signer or RequestSigner(SECRET)).sign("POST", path, body)
    return httpx.post(url + path, content=body, headers=headers, timeout=30)


def test_health_turns_ready_once_the_model_is_loaded(agent: str) -> None:
    wait_until(lambda: ready(agent), 10, "agent ready")
    body = httpx.get(agent + "/health").json()
    assert body["status"] == "ready" and body["running_jobs"] == 0


def test_unsigned_forged_and_replayed_intake_is_refused(agent: str, sink: ReportSink) -> None:
    wait_until(lambda: ready(agent), 10, "agent ready")
    body = job(sink, "x").model_dump_json().encode()
    assert httpx.post(agent + "/v1/jobs", content=body).status_code == 401
    assert signed_post(agent, "/v1/jobs", body, RequestSigner("wrong")).status_code == 401
    headers = RequestSigner(SECRET).sign("POST", "/v1/jobs", body)
    assert httpx.post(agent + "/v1/jobs", content=body, headers=headers).status_code == 202
    replay = httpx.post(agent + "/v1/jobs", content=body, headers=headers)
    assert replay.status_code == 401 and replay.json()["error"]["code"] == "replayed_request"
    assert sink.final(json.loads(body)["job_id"])["outcome"] == "succeeded"  # the one signed hand-over ran


def test_a_job_handed_over_twice_runs_once_and_reports_its_exact_text(
    agent: str, sink: ReportSink, ollama: str
) -> None:
    wait_until(lambda: ready(agent), 10, "agent ready")
    prompt = f"once {uuid.uuid4()}"
    spec = job(sink, prompt)
    body = spec.model_dump_json().encode()
    first = signed_post(agent, "/v1/jobs", body)
    second = signed_post(agent, "/v1/jobs", body)
    assert first.status_code == 202
    assert second.status_code == 200 and second.json()["duplicate"] is True
    final = sink.final(spec.job_id)
    assert final["outcome"] == "succeeded" and final["result"]["eval_count"] == 24
    assert sink.text(spec.job_id) == fake_completion_text(MODEL, prompt, 24)
    assert sink.reports[0]["started"] is True and sink.reports[0]["auth"] == f"Bearer 1.tok-{spec.job_id}"
    stats = httpx.get(ollama + "/__fake__/stats").json()
    assert stats["generations_by_prompt"][prompt_key(prompt)] == 1


def test_direct_stream_returns_ndjson_and_still_reports(agent: str, sink: ReportSink) -> None:
    wait_until(lambda: ready(agent), 10, "agent ready")
    prompt = f"stream {uuid.uuid4()}"
    spec = job(sink, prompt)
    lines = [
        json.loads(line) for line in signed_post(agent, "/v1/stream", spec.model_dump_json().encode()).text.splitlines()
    ]
    assert lines[-1] == {"done": True, "status": "succeeded"}
    assert "".join(line["response"] for line in lines[:-1]) == fake_completion_text(MODEL, prompt, 24)
    assert sink.final(spec.job_id)["outcome"] == "succeeded"
    assert sink.text(spec.job_id) == fake_completion_text(MODEL, prompt, 24)


def test_cancel_from_the_control_plane_stops_generation_and_keeps_partial_output(agent: str, sink: ReportSink) -> None:
    wait_until(lambda: ready(agent), 10, "agent ready")
    sink.cancel_after_chunks = 1
    spec = job(sink, "long one", options={"num_predict": 5000})
    assert signed_post(agent, "/v1/jobs", spec.model_dump_json().encode()).status_code == 202
    final = sink.final(spec.job_id)
    assert final["outcome"] == "cancelled"
    partial = sink.text(spec.job_id)
    assert partial and fake_completion_text(MODEL, "long one", 5000).startswith(partial)
    assert len(partial) < len(fake_completion_text(MODEL, "long one", 5000))


def test_timeout_fails_the_attempt_with_partial_output(agent: str, sink: ReportSink) -> None:
    wait_until(lambda: ready(agent), 10, "agent ready")
    spec = job(sink, "slow", options={"num_predict": 5000}, timeout_s=0.3)
    signed_post(agent, "/v1/jobs", spec.model_dump_json().encode())
    final = sink.final(spec.job_id)
    assert final["outcome"] == "failed" and final["error"]["code"] == "timeout"
    assert sink.text(spec.job_id)


def test_unknown_model_fails_with_the_model_servers_reason(agent: str, sink: ReportSink) -> None:
    wait_until(lambda: ready(agent), 10, "agent ready")
    spec = job(sink, "x", model="no-such-model:7b")
    signed_post(agent, "/v1/jobs", spec.model_dump_json().encode())
    final = sink.final(spec.job_id)
    assert final["outcome"] == "failed" and final["error"]["code"] == "model_not_found"
    assert "no-such-model" in final["error"]["message"]


def test_jobs_running_together_report_in_shared_requests_each_with_its_own_token(agent: str, sink: ReportSink) -> None:
    wait_until(lambda: ready(agent), 10, "agent ready")
    sink.hold_s = 0.1  # a slow control plane: one request in flight, the rest of the box's news waits for the next
    specs = [job(sink, f"batch {i} {uuid.uuid4()}", batched=True) for i in range(10)]
    for spec in specs:
        assert signed_post(agent, "/v1/jobs", spec.model_dump_json().encode()).status_code == 202
    for spec in specs:
        assert sink.final(spec.job_id)["outcome"] == "succeeded"
        assert sink.text(spec.job_id) == fake_completion_text(MODEL, spec.prompt or "", 24)
        assert {r["auth"] for r in sink.reports if r["job_id"] == spec.job_id} == {f"Bearer 1.tok-{spec.job_id}"}
    assert sink.requests < len(specs)  # one POST per job and report would be at least 2 per job


def test_an_http_1_0_caller_gets_the_stream_unframed_until_the_connection_closes(agent: str, sink: ReportSink) -> None:
    wait_until(lambda: ready(agent), 10, "agent ready")
    spec = job(sink, f"old client {uuid.uuid4()}", batched=True)
    body = spec.model_dump_json().encode()
    headers = "".join(f"{k}: {v}\r\n" for k, v in RequestSigner(SECRET).sign("POST", "/v1/stream", body).items())
    host, port = agent.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=30) as conn:
        conn.sendall(
            f"POST /v1/stream HTTP/1.0\r\nContent-Type: application/json\r\nContent-Length: {len(body)}\r\n"
            f"{headers}\r\n".encode()
            + body
        )
        received = b"".join(iter(lambda: conn.recv(65536), b""))
    head, _, rest = received.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.0 200") and b"chunked" not in head.lower()
    lines = [json.loads(line) for line in rest.splitlines()]
    assert lines[-1] == {"done": True, "status": "succeeded"}
    assert "".join(line["response"] for line in lines[:-1]) == fake_completion_text(MODEL, spec.prompt or "", 24)
    assert sink.final(spec.job_id)["outcome"] == "succeeded"


def test_reports_refused_by_a_control_plane_in_trouble_are_resent_until_taken(agent: str, sink: ReportSink) -> None:
    wait_until(lambda: ready(agent), 10, "agent ready")
    sink.fail_next = 3
    spec = job(sink, f"resent {uuid.uuid4()}", batched=True)
    assert signed_post(agent, "/v1/jobs", spec.model_dump_json().encode()).status_code == 202
    assert sink.final(spec.job_id)["outcome"] == "succeeded"
    assert sink.text(spec.job_id) == fake_completion_text(MODEL, spec.prompt or "", 24)
    assert sink.fail_next == 0 and sink.requests > 3


def _h11_exchange(sock: socket.socket, conn: h11.Connection, *events: Any) -> list[Any]:
    """Send one request's events; read the whole response (h11 refuses any framing it does not accept)."""
    for event in events:
        sock.sendall(conn.send(event) or b"")
    received: list[Any] = []
    while not received or not isinstance(received[-1], h11.EndOfMessage):
        event = conn.next_event()
        if event is h11.NEED_DATA:
            conn.receive_data(sock.recv(65536))
        else:
            received.append(event)
    return received


def test_a_strict_http_1_1_client_reads_the_stream_as_whole_chunks_on_a_reusable_connection(
    agent: str, sink: ReportSink
) -> None:
    wait_until(lambda: ready(agent), 10, "agent ready")
    spec = job(sink, f"strict client {uuid.uuid4()}", batched=True)
    body = spec.model_dump_json().encode()
    host, port = agent.removeprefix("http://").split(":")
    headers = [
        ("Host", f"{host}:{port}"),
        ("Content-Type", "application/json"),
        ("Content-Length", str(len(body))),
        *RequestSigner(SECRET).sign("POST", "/v1/stream", body).items(),
    ]
    conn = h11.Connection(h11.CLIENT)
    with socket.create_connection((host, int(port)), timeout=30) as sock:
        events = _h11_exchange(
            sock,
            conn,
            h11.Request(method="POST", target="/v1/stream", headers=headers),
            h11.Data(data=body),
            h11.EndOfMessage(),
        )
        head = events[0]
        assert isinstance(head, h11.Response) and head.status_code == 200 and head.http_version == b"1.1"
        names = dict(head.headers)
        assert names[b"transfer-encoding"] == b"chunked" and names[b"content-type"] == b"application/x-ndjson"
        assert b"content-length" not in names and b"content-encoding" not in names
        chunks, current = [], b""
        for event in events[1:-1]:
            assert isinstance(event, h11.Data)
            current += event.data
            if event.chunk_end:
                chunks.append(current)
                current = b""
        assert current == b"" and len(chunks) >= 2
        assert all(chunk.endswith(b"\n") for chunk in chunks)  # every chunk holds whole NDJSON lines
        lines = [json.loads(line) for chunk in chunks for line in chunk.splitlines()]
        assert lines[-1] == {"done": True, "status": "succeeded"}
        assert "".join(line["response"] for line in lines[:-1]) == fake_completion_text(MODEL, spec.prompt or "", 24)
        # The body ended where its framing said: the same connection answers the next request.
        conn.start_next_cycle()
        health = _h11_exchange(
            sock, conn, h11.Request(method="GET", target="/health", headers=[("Host", host)]), h11.EndOfMessage()
        )
        assert isinstance(health[0], h11.Response) and health[0].status_code == 200
    assert sink.final(spec.job_id)["outcome"] == "succeeded"


def test_refusals_answer_with_their_status_and_error_body(agent_of: Callable[..., str], sink: ReportSink) -> None:
    busy = agent_of(max_concurrent_jobs=1)
    wait_until(lambda: ready(busy), 10, "agent ready")
    invalid = signed_post(busy, "/v1/jobs", b'{"job_id": "j"}')
    assert invalid.status_code == 422 and invalid.json()["error"]["code"] == "invalid_job"
    assert set(invalid.json()) == {"error"} and set(invalid.json()["error"]) == {"code", "message"}
    unknown = signed_post(busy, "/v1/jobs/job_nope/cancel", b"{}")
    assert unknown.status_code == 404
    assert unknown.json() == {"error": {"code": "job_not_found", "message": "this agent has no such job"}}
    long = job(sink, "long", options={"num_predict": 5000})
    assert signed_post(busy, "/v1/jobs", long.model_dump_json().encode()).status_code == 202
    for path in ("/v1/jobs", "/v1/stream"):
        full = signed_post(busy, path, job(sink, "another").model_dump_json().encode())
        assert full.status_code == 503
        assert full.json() == {"error": {"code": "agent_busy", "message": "1 jobs already running"}}
    assert signed_post(busy, f"/v1/jobs/{long.job_id}/cancel", b"{}").json() == {"cancelled": True}

    waiting = agent_of(ollama_url=f"http://127.0.0.1:{free_port()}")  # no model server yet
    early = signed_post(waiting, "/v1/stream", job(sink, "early").model_dump_json().encode())
    assert early.status_code == 503
    assert early.json() == {"error": {"code": "starting_instance", "message": "agent is starting_instance"}}


def test_metrics_count_jobs_and_tokens_in_prometheus_text_behind_a_token(
    agent_of: Callable[..., str], sink: ReportSink
) -> None:
    from prometheus_client.parser import text_string_to_metric_families

    url = agent_of(metrics_token="scrape-me")
    wait_until(lambda: ready(url), 10, "agent ready")
    assert httpx.get(url + "/metrics").status_code == 401
    for i in range(2):
        spec = job(sink, f"metrics {uuid.uuid4()} {i}")
        assert signed_post(url, "/v1/jobs", spec.model_dump_json().encode()).status_code == 202
        assert sink.final(spec.job_id)["outcome"] == "succeeded"

    def scrape() -> dict[str, float]:
        text = httpx.get(url + "/metrics", headers={"Authorization": "Bearer scrape-me"}).text
        return {
            s.name + "".join(f"{{{v}}}" for v in s.labels.values()): s.value
            for family in text_string_to_metric_families(text)
            for s in family.samples
        }

    wait_until(lambda: scrape().get("gpuq_agent_jobs_total{succeeded}") == 2, 10, "both attempts counted")
    seen = scrape()
    assert seen["gpuq_agent_tokens_generated_total"] == 48 and seen["gpuq_agent_tokens_per_second"] > 0
    assert seen["gpuq_agent_phase{ready}"] == 1 and seen["gpuq_agent_phase{loading_model}"] == 0
    assert seen["gpuq_agent_jobs_running"] == 0 and seen["gpuq_agent_model_load_seconds"] >= 0
    closed = agent_of()  # no token set: nobody scrapes a public port
    assert httpx.get(closed + "/metrics").json()["error"]["code"] == "metrics_disabled"
