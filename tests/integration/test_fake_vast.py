"""The fake Vast cloud is faithful: the official ``vastai`` CLI works against it, and its rules hold."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from shared.fakes.vast import FakeVastConfig, FakeVastControl, FakeVastServer, serve_in_thread
from tests.required_tools import VASTAI_CLI, require_tool
from tests.servers import wait_until

KEY = "acct-key-fake-vast"
VASTAI = VASTAI_CLI

TINY_SERVER = """
import json, os, signal, sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
class H(BaseHTTPRequestHandler):
    def do_GET(self):
        body = json.dumps({k: v for k, v in os.environ.items() if k in ("CONTAINER_ID", "FOO", "VAST_URL",
                           "GPUQ_AGENT_PORT", "VAST_TCP_PORT_8000", "PUBLIC_IPADDR")}).encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    def log_message(self, *args):
        pass
ThreadingHTTPServer((os.environ["GPUQ_AGENT_HOST"], int(os.environ["GPUQ_AGENT_PORT"])), H).serve_forever()
"""


@pytest.fixture(scope="module")
def script(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("tiny") / "tiny_http.py"
    path.write_text(TINY_SERVER)
    return path


@pytest.fixture(scope="module")
def fake(script: Path) -> Iterator[FakeVastServer]:
    config = FakeVastConfig(
        api_key=KEY,
        command=[sys.executable, str(script)],
        schedule_delay_s=0.05,
        loading_delay_s=0.1,
        restart_loading_delay_s=0.05,
        stop_delay_s=0.05,
        stop_grace_s=3.0,
    )
    with serve_in_thread(config) as server:
        yield server


@pytest.fixture
def api(fake: FakeVastServer) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=fake.url, headers={"Authorization": f"Bearer {KEY}"}, timeout=10) as client:
        yield client


@pytest.fixture
def cli_env(fake: FakeVastServer, tmp_path: Path) -> dict[str, str]:
    require_tool(VASTAI, "venv")
    return {
        "PATH": os.environ.get("PATH", ""),
        "HOME": str(tmp_path),
        "VAST_URL": fake.url,
        "VASTAI_NO_UPDATE_CHECK": "1",
        "XDG_CONFIG_HOME": str(tmp_path / "config"),
        "XDG_CACHE_HOME": str(tmp_path / "cache"),
        "XDG_STATE_HOME": str(tmp_path / "state"),
    }


def vastai(env: dict[str, str], *args: str, key: str = KEY) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(VASTAI), *args, "--api-key", key], env=env, capture_output=True, text=True, timeout=60, check=False
    )


def create(api: httpx.Client, offer: int = 5100002, **body: Any) -> int:
    payload = {"client_id": "me", "image": "tiny", "env": {"-p 8000:8000": "1"}, "disk": 10, "label": "gpuq", **body}
    response = api.put(f"/api/v0/asks/{offer}/", json=payload)
    assert response.status_code == 200, response.text
    return int(response.json()["new_contract"])


def show(api: httpx.Client, instance_id: int) -> dict[str, Any] | None:
    row = api.get(f"/api/v0/instances/{instance_id}/").json()["instances"]
    return dict(row) if row else None


def wait_status(api: httpx.Client, instance_id: int, status: str) -> dict[str, Any]:
    wait_until(lambda: (show(api, instance_id) or {}).get("actual_status") == status, 10, f"{instance_id} {status}")
    return show(api, instance_id) or {}


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return Path(f"/proc/{pid}/stat").exists() and Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"


def test_vastai_search_offers_raw_posts_its_filters_to_bundles(
    cli_env: dict[str, str], control: FakeVastControl
) -> None:
    result = vastai(cli_env, "search", "offers", "gpu_name=RTX_4090 reliability>0.98", "-o", "dph", "--raw")
    assert result.returncode == 0, result.stderr
    offers = json.loads(result.stdout)
    assert [o["id"] for o in offers] == [5100002, 5100003]  # verified only (the CLI's default), cheapest first
    assert all(o["gpu_name"] == "RTX 4090" and o["reliability"] > 0.98 for o in offers)
    assert control.calls()["bundles"] == 1


def test_vastai_create_show_stop_start_and_destroy_work_against_the_fake(
    cli_env: dict[str, str], control: FakeVastControl, api: httpx.Client
) -> None:
    for _ in range(26):  # more than one page of the v1 list, which `show instances` must follow
        create(api, 5100004, target_state="stopped", label="bulk")
    create_args = ["instance", "5100002", "--image", "gpuq/agent:test", "--env", "-e FOO=bar -p 8000:8000"]
    result = vastai(
        cli_env, "create", *create_args, "--onstart-cmd", "echo hi", "--disk", "24", "--label", "gpuq", "--raw"
    )
    assert result.returncode == 0, result.stderr
    created = json.loads(result.stdout)
    assert created["success"] is True
    vid = int(created["new_contract"])

    listed = vastai(cli_env, "show", "instances", "--raw")
    assert listed.returncode == 0, listed.stderr
    rows = {row["id"]: row for row in json.loads(listed.stdout)}
    assert len(rows) == 27 and control.calls()["list"] == 2
    ours = rows[vid]
    assert ours["label"] == "gpuq" and ours["disk_space"] == 24 and ours["onstart"] == "echo hi"
    assert ours["extra_env"] == {"FOO": "bar", "-p 8000:8000": "1"} and ours["start_date"] <= time.time()

    running = wait_status(api, vid, "running")
    port = running["ports"]["8000/tcp"][0]["HostPort"]
    seen = httpx.get(f"http://{running['public_ipaddr']}:{port}/", timeout=5).json()
    assert seen == {
        "CONTAINER_ID": str(vid),
        "FOO": "bar",
        "VAST_URL": cli_env["VAST_URL"],
        "GPUQ_AGENT_PORT": port,
        "VAST_TCP_PORT_8000": port,
        "PUBLIC_IPADDR": "127.0.0.1",
    }
    pid = control.instance(vid)["pid"]  # type: ignore[index]

    stopped = vastai(cli_env, "stop", "instance", str(vid))
    assert stopped.returncode == 0 and f"stopping instance {vid}" in stopped.stdout
    assert wait_status(api, vid, "stopped")["intended_status"] == "stopped" and not alive(pid)

    started = vastai(cli_env, "start", "instance", str(vid))
    assert started.returncode == 0 and f"starting instance {vid}" in started.stdout
    again = wait_status(api, vid, "running")
    assert again["ports"]["8000/tcp"][0]["HostPort"] != port  # a new public port after every start

    one = vastai(cli_env, "show", "instance", str(vid), "--raw")
    assert json.loads(one.stdout)["id"] == vid and "duration" in json.loads(one.stdout)
    gone = vastai(cli_env, "destroy", "instance", str(vid), "-y")
    assert gone.returncode == 0 and f"destroying instance {vid}" in gone.stdout
    assert show(api, vid) is None


def test_vastai_stop_exits_zero_even_when_vast_refuses(
    cli_env: dict[str, str], control: FakeVastControl, api: httpx.Client
) -> None:
    vid = create(api)
    wait_status(api, vid, "running")
    control.set(stop_fails=1)
    refused = vastai(cli_env, "stop", "instance", str(vid))
    assert refused.returncode == 0 and "Unable to stop" in refused.stdout
    assert (show(api, vid) or {})["intended_status"] == "running"
    bad_key = vastai(cli_env, "stop", "instance", str(vid), key="wrong")
    assert bad_key.returncode == 0 and "Invalid user key" in bad_key.stderr  # so: always confirm with a GET


def test_container_keys_reach_only_their_own_instance(
    fake: FakeVastServer, control: FakeVastControl, api: httpx.Client
) -> None:
    a, b = create(api), create(api, 5100003)
    key_a = control.instance(a)["container_key"]  # type: ignore[index]
    headers = {"Authorization": f"Bearer {key_a}"}
    assert httpx.get(f"{fake.url}/api/v0/instances/{a}/", headers=headers).json()["instances"]["id"] == a
    for method, path in (
        ("GET", f"/api/v0/instances/{b}/"),
        ("PUT", f"/api/v0/instances/{b}/"),
        ("DELETE", f"/api/v0/instances/{b}/"),
        ("GET", "/api/v1/instances/"),
        ("POST", "/api/v0/bundles/"),
        ("PUT", "/api/v0/asks/5100005/"),
    ):
        denied = httpx.request(method, fake.url + path, headers=headers, json={})
        assert denied.status_code == 401 and denied.json()["error"] == "auth_error", (method, path)
    stop = httpx.put(f"{fake.url}/api/v0/instances/{a}/", headers=headers, json={"state": "stopped"})
    assert stop.json() == {"success": True} and (show(api, b) or {})["intended_status"] == "running"


def test_errors_and_rate_limits_look_like_vast(
    fake: FakeVastServer, control: FakeVastControl, api: httpx.Client
) -> None:
    assert httpx.get(fake.url + "/api/v0/gpu_names/unique/").json()["gpu_names"]  # no key needed
    bad = httpx.get(fake.url + "/api/v1/instances/", headers={"Authorization": "Bearer nope"})
    assert bad.status_code == 401 and bad.json() == {"success": False, "error": "auth_error", "msg": "Invalid user key"}
    assert api.get("/api/v0/instances/").status_code == 410  # the retired v0 list
    assert api.get("/api/v0/instances/123/").json() == {"instances": None}
    offers = api.post("/api/v0/bundles/", json={"gpu_name": {"in": ["H100 SXM"]}, "order": [["dph_total", "asc"]]})
    assert offers.headers["Content-Type"] == "application/json"
    assert [o["id"] for o in offers.json()["offers"]] == [5100005, 5100006]

    control.set(rate_limits_s={"show": 30.0})
    try:
        assert api.get("/api/v0/instances/1/").status_code == 200
        limited = [api.get("/api/v0/instances/1/") for _ in range(4)]
    finally:
        control.set(rate_limits_s={})
    assert [r.status_code for r in limited] == [429] * 4 and "Retry-After" not in limited[0].headers
    kinds = {r.headers["Content-Type"].split(";")[0] for r in limited}
    assert kinds == {"text/plain", "application/json"}
    text = next(r for r in limited if r.headers["Content-Type"].startswith("text/plain"))
    assert text.text.startswith("API requests too frequent")
    assert control.statuses()["show"]["429"] == 4


def test_sigterm_stops_the_fake_and_every_instance_process(script: Path, tmp_path: Path) -> None:
    env = {**os.environ, "VASTAI_API_KEY": KEY, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "shared.fakes.vast",
            "--port",
            "0",
            "--stop-delay",
            "0",
            "--command",
            json.dumps([sys.executable, str(script)]),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        env=env,
        text=True,
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        url = line.split("listening on ")[1].split()[0]
        with httpx.Client(base_url=url, headers={"Authorization": f"Bearer {KEY}"}, timeout=10) as client:
            vid = create(client)
            wait_status(client, vid, "running")
            pid = client.get("/__fake__/instances").json()["instances"][0]["pid"]
        assert alive(pid)
        proc.send_signal(signal.SIGTERM)
        rest, _ = proc.communicate(timeout=15)
        assert proc.returncode == 0 and "stopped every instance" in rest
        assert not alive(pid)
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.communicate()
