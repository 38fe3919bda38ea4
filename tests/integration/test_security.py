"""Each security rule, tried over a real socket against a running stack: the forbidden request is refused.

The stack here runs closer to production: reaper behind Cloud Scheduler OIDC (with our own signing
key standing in for Google's, served from a local certs URL), no callback allow-list, a low rate limit.
"""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from google.auth import crypt, jwt

from shared.security.signing import RequestSigner, derive_agent_secret, job_token
from shared.tools.client import JobsClient
from shared.tools.devstack import DevStack
from shared.tools.receiver import CallbackReceiver
from tests.servers import MODEL, start_stack, wait_until

SCHEDULER_SA = "scheduler@gpuq-test.iam.gserviceaccount.com"
RATE_PER_MIN = 120.0


class GoogleStandIn:
    """Signs OIDC tokens with a key of ours and serves its public key the way Google's certs URL does."""

    def __init__(self) -> None:
        key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        pem = key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
        public = (
            key.public_key()
            .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
            .decode()
        )
        self.signer = crypt.RSASigner.from_string(pem, key_id="k1")
        body = json.dumps({"k1": public}).encode()

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:
                return

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/certs"

    def token(self, audience: str, email: str = SCHEDULER_SA, expires_in: int = 600, **extra: Any) -> str:
        now = int(time.time())
        claims = {
            "iss": "https://accounts.google.com",
            "aud": audience,
            "email": email,
            "email_verified": True,
            "iat": now - 5,
            "exp": now + expires_in,
            "sub": "1234",
            **extra,
        }
        return jwt.encode(self.signer, claims).decode()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture(scope="module")
def google() -> Iterator[GoogleStandIn]:
    stand_in = GoogleStandIn()
    yield stand_in
    stand_in.close()


@pytest.fixture
def client(hardened: DevStack) -> Iterator[JobsClient]:
    with JobsClient(hardened.url, hardened.api_key) as jobs:
        yield jobs


@pytest.fixture(scope="module")
def hardened(tmp_path_factory: pytest.TempPathFactory, google: GoogleStandIn) -> Iterator[DevStack]:
    stack = start_stack(
        tmp_path_factory.mktemp("hardened"),
        overrides={
            "scheduler_service_account": SCHEDULER_SA,
            "oidc_certs_url": google.url,
            "callback_allow_hosts": "",
            "rate_limit_per_min": RATE_PER_MIN,
        },
    )
    yield stack
    stack.stop()


def test_reaper_accepts_only_the_schedulers_oidc_token(hardened: DevStack, google: GoogleStandIn) -> None:
    url = hardened.url + "/reaper"
    audience = hardened.settings.reaper_audience()

    def call(token: str | None) -> httpx.Response:
        return httpx.post(url, headers={"Authorization": f"Bearer {token}"} if token else {}, timeout=30)

    assert call(google.token(audience)).status_code == 200
    refused = {
        "no token": call(None),
        "the dev reaper token": call(hardened.settings.reaper_token),
        "wrong audience": call(google.token("https://elsewhere.example/reaper")),
        "wrong service account": call(google.token(audience, email="intruder@evil.example")),
        "expired": call(google.token(audience, expires_in=-120)),
        "unverified email": call(google.token(audience, email_verified=False)),
        "garbage": call("not.a.jwt"),
    }
    assert {name: r.status_code for name, r in refused.items()} == dict.fromkeys(refused, 401)
    assert all(r.json()["error"]["code"] in ("missing_oidc_token", "invalid_oidc_token") for r in refused.values())


def test_a_box_can_announce_only_itself(hardened: DevStack) -> None:
    url = hardened.url + "/trigger"
    master = hardened.settings.agent_master_secret

    def announce(instance_id: str, secret: str, headers: dict[str, str] | None = None) -> httpx.Response:
        body = json.dumps({"instance_id": instance_id}).encode()
        sent = headers or RequestSigner(secret).sign("POST", "/trigger", body)
        return httpx.post(url, content=body, headers={**sent, "Content-Type": "application/json"}, timeout=30)

    own = derive_agent_secret(master, "local-1")
    good_headers = RequestSigner(own).sign("POST", "/trigger", json.dumps({"instance_id": "local-1"}).encode())
    assert announce("local-1", own, good_headers).status_code == 200
    replay = announce("local-1", own, good_headers)
    assert replay.status_code == 401 and replay.json()["error"]["code"] == "replayed_request"
    other_box = announce("local-2", own)  # box 1's secret does not speak for box 2
    assert other_box.status_code == 401
    stale = RequestSigner(own).sign(
        "POST", "/trigger", json.dumps({"instance_id": "local-1"}).encode(), now=time.time() - 600
    )
    assert announce("local-1", own, stale).status_code == 401


def test_reports_need_the_token_of_that_job_and_attempt(hardened: DevStack, client: JobsClient) -> None:
    job = client.submit({"model": MODEL, "prompt": f"tokens {uuid.uuid4()}"})
    client.wait(job["id"], timeout_s=60)
    other = client.submit({"model": MODEL, "prompt": f"other {uuid.uuid4()}"})
    client.wait(other["id"], timeout_s=60)
    secret = hardened.settings.job_token_secret
    wrong_job = job_token(secret, other["id"], 1)
    response = httpx.post(
        f"{hardened.url}/v1/jobs/{job['id']}/events",
        json={"attempt": 1},
        headers={"Authorization": f"Bearer {wrong_job}"},
    )
    assert response.status_code == 401
    late = httpx.post(
        f"{hardened.url}/v1/jobs/{job['id']}/events",
        json={"attempt": 1, "outcome": "failed", "error": {"code": "x", "message": "late"}},
        headers={"Authorization": f"Bearer {job_token(secret, job['id'], 1)}"},
    )
    assert late.status_code == 200 and late.json()["cancel"] is True  # a finished job is not rewritten
    assert client.get(job["id"])["status"] == "succeeded"
    # In a box's batch each entry stands on its own token: the forged one is refused, the other applied.
    batch = httpx.post(
        f"{hardened.url}/v1/reports",
        json={
            "reports": [
                {"job_id": job["id"], "token": wrong_job, "report": {"attempt": 1}},
                {"job_id": other["id"], "token": job_token(secret, other["id"], 1), "report": {"attempt": 1}},
            ]
        },
    )
    assert batch.status_code == 200
    forged, genuine = batch.json()["acks"]
    assert forged["error"]["code"] == "invalid_job_token" and forged["cancel"] is True and forged["status"] is None
    assert genuine["error"] is None and genuine["status"] == "succeeded" and genuine["cancel"] is True
    only_forged = httpx.post(
        f"{hardened.url}/v1/reports",
        json={"reports": [{"job_id": job["id"], "token": wrong_job, "report": {"attempt": 1}}]},
    )
    assert only_forged.status_code == 401 and only_forged.json()["error"]["code"] == "invalid_job_token"


def test_callback_to_a_name_resolving_to_loopback_is_refused_at_delivery(
    hardened: DevStack, client: JobsClient
) -> None:
    receiver = CallbackReceiver(hardened.settings.webhook_secret).start()
    port = receiver.url.split(":")[2].split("/")[0]
    job = client.submit({"model": MODEL, "prompt": "ssrf", "callback_url": f"http://localhost:{port}/hook"})
    for literal in (
        "http://127.0.0.1/x",
        "http://[::1]/x",
        "http://169.254.169.254/latest/meta-data",
        "http://10.0.0.1/x",
        "http://224.0.0.1/x",
    ):
        with pytest.raises(Exception, match="422"):
            client.submit({"model": MODEL, "prompt": "ssrf", "callback_url": literal})
    wait_until(lambda: client.get(job["id"])["callback"]["failed"] != [], 60, "delivery refused")
    delivery = client.get(job["id"])["callback"]["deliveries"][-1]
    assert delivery["outcome"] == "failed" and "loopback" in delivery["error"]
    assert receiver.events == []
    receiver.stop()


def test_rate_limit_is_hit_and_recovers(hardened: DevStack) -> None:
    headers = {"Authorization": f"Bearer {hardened.api_key}"}
    with httpx.Client(base_url=hardened.url, headers=headers) as http:
        statuses = [http.get("/v1/jobs/job_nope").status_code for _ in range(int(RATE_PER_MIN) + 5)]
        assert 429 in statuses
        limited = http.get("/v1/jobs/job_nope")
        assert limited.status_code == 429 and limited.json()["error"]["code"] == "rate_limited"
        wait_s = float(limited.headers["Retry-After"])
        assert 0 < wait_s <= 60
        time.sleep(wait_s)  # the limit's own promise: after Retry-After seconds a request goes through
        assert http.get("/v1/jobs/job_nope").status_code == 404


def test_no_secret_appears_in_any_log(hardened: DevStack, client: JobsClient) -> None:
    job = client.submit({"model": MODEL, "prompt": "secrets"})
    client.wait(job["id"], timeout_s=60)
    s = hardened.settings
    secrets_ = {
        "api key": hardened.api_key,
        "trigger token": s.trigger_token,
        "reaper token": s.reaper_token,
        "task secret": s.task_secret,
        "agent master secret": s.agent_master_secret,
        "box secret": derive_agent_secret(s.agent_master_secret, "local-1"),
        "job token secret": s.job_token_secret,
        "webhook secret": s.webhook_secret,
        "a job token": job_token(s.job_token_secret, job["id"], 1).split(".", 1)[1],
    }
    logs = {p.name: p.read_text(errors="replace") for p in Path(hardened.log_dir).glob("*.log")}
    assert {"functions.log", "agent-local-1.log"} <= set(logs)
    leaks = {(name, file) for name, value in secrets_.items() for file, text in logs.items() if value in text}
    assert leaks == set()
    body = json.dumps(client.get(job["id"]))
    assert not any(value in body for value in secrets_.values())
