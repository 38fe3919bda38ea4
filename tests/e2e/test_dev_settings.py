"""`gpuq dev` as a user runs it: what they export beats the dev defaults, and the secrets in use are shown."""

from __future__ import annotations

import base64
import os
import secrets
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from standardwebhooks.webhooks import Webhook

from shared.tools.devstack import free_port
from shared.tools.receiver import CallbackReceiver
from tests.servers import MODEL

USER_SECRET = "whsec_" + base64.b64encode(secrets.token_bytes(24)).decode()


@pytest.fixture
def dev(tmp_path: Path) -> Iterator[tuple[str, dict[str, str], Path]]:
    """`gpuq dev` in its own process with the user's exports; yields its URL, its banner lines, its data dir."""
    port = free_port()
    env = {
        **os.environ,
        "GPUQ_WEBHOOK_SECRET": USER_SECRET,
        "GPUQ_RATE_LIMIT_PER_MIN": "60",
        "GPUQ_PUBLIC_URL": "http://elsewhere.invalid",
    }
    argv = [sys.executable, "-m", "shared.tools.cli", "dev", "--port", str(port), "--data-dir", str(tmp_path)]
    proc = subprocess.Popen(argv, env=env, stdout=subprocess.PIPE, text=True, start_new_session=True)
    banner: dict[str, str] = {}
    assert proc.stdout is not None
    for line in proc.stdout:  # the banner ends with the model server line: the stack is up then
        key, _, rest = line.removeprefix("gpuq dev: ").partition(" ")
        banner[key] = rest.strip()
        if line.startswith("gpuq dev: model server"):
            break
    try:
        yield f"http://127.0.0.1:{port}", banner, tmp_path
    finally:
        proc.terminate()
        proc.wait(timeout=60)
        proc.stdout.close()


def test_exported_settings_beat_the_dev_defaults_and_the_secret_in_use_is_shown(
    dev: tuple[str, dict[str, str], Path],
) -> None:
    url, banner, data_dir = dev
    assert banner["callbacks"].split()[2] == USER_SECRET  # "signed with <secret> (also in …)"
    assert (data_dir / "dev-webhook-secret").read_text() == USER_SECRET
    assert "GPUQ_RATE_LIMIT_PER_MIN, GPUQ_WEBHOOK_SECRET" in banner["from"]
    assert USER_SECRET not in banner["from"]  # names only, never a value
    assert "GPUQ_PUBLIC_URL" in banner["ignored"]
    key = (data_dir / "dev-api-key").read_text()
    headers = {"Authorization": f"Bearer {key}"}

    receiver = CallbackReceiver(USER_SECRET).start()
    try:
        with httpx.Client(base_url=url, headers=headers, timeout=30) as http:
            job = http.post("/v1/jobs", json={"model": MODEL, "prompt": "sign it", "callback_url": receiver.url})
            assert job.status_code == 202
            assert receiver.wait_for(lambda events: len(events) == 1, timeout=60)
            sent_headers, body = receiver.raw[0]
            verified = Webhook(USER_SECRET).verify(body, sent_headers)  # the reference library agrees
            assert verified["data"]["id"] == job.json()["id"]
            answers = [http.get("/v1/cost").status_code for _ in range(130)]
    finally:
        receiver.stop()
    assert 429 in answers  # the user's 60/min holds, not the dev default of 100,000
    assert answers.count(200) <= 2 * 60
