"""The OVH AI Deploy provider against the fake ``ovhai`` CLI, run as a real executable on PATH."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import os
import re
import signal
import sys
import time
from collections.abc import Awaitable, Callable, Coroutine, Iterator
from pathlib import Path
from typing import Any, ParamSpec, TypeVar

import httpx
import pytest

from shared.boxes.providers.ovh import OvhProvider
from shared.errors import ProviderError
from shared.fakes import ovhai as fake
from shared.models import Instance, InstanceState
from shared.settings import OvhSettings

TOKEN = "tok-secret-123"
P = ParamSpec("P")
T = TypeVar("T")


def synchronous(test: Callable[P, Coroutine[Any, Any, T]]) -> Callable[P, T]:
    """Run an async test body in its own event loop (the suite's style: no async test plugin)."""

    @functools.wraps(test)
    def run(*args: P.args, **kwargs: P.kwargs) -> T:
        return asyncio.run(test(*args, **kwargs))

    return run


def exited(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] in ("Z", "X")
    except OSError:
        return True


@pytest.fixture
def state_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    path = tmp_path / "ovhai" / "state.json"
    bin_dir = tmp_path / "bin"
    fake.install(bin_dir, path)
    monkeypatch.setenv("PATH", f"{bin_dir}:{Path(sys.executable).parent}:/usr/bin:/bin")
    fake.configure(path, token=TOKEN, timings={"QUEUED": 0.1, "INITIALIZING": 0.2, "STOPPING": 0.3, "DELETING": 0.1})
    yield path
    for app in fake.read_state(path)["apps"].values():  # a box the fake launched must not outlive the test
        if app.get("_pid"):
            with contextlib.suppress(ProcessLookupError):
                os.killpg(app["_pid"], signal.SIGKILL)


def settings(**overrides: Any) -> OvhSettings:
    values: dict[str, Any] = {
        "token": TOKEN,
        "image": "ghcr.io/acme/gpuq-agent:1",
        "flavor": "l40s-1-gpu",
        "gpu": 1,
        "model_bucket": "gpuq-models",
        "preload_models": "llama3.2:1b,qwen2.5:7b",
        "deployment": "test",
        "agent_env": "GPUQ_AGENT_READY_URL=https://cp.example/trigger",
        "poll_s": 0.05,
        "stop_confirm_s": 10.0,
        "timeout_s": 10.0,
    }
    values.update(overrides)
    return OvhSettings.model_validate(values)


@pytest.fixture
def provider(state_path: Path) -> OvhProvider:
    return OvhProvider(settings())


def calls(state_path: Path) -> list[list[str]]:
    return [c["argv"] for c in fake.read_state(state_path)["calls"]]


def verbs(state_path: Path) -> list[str]:
    return [f"{a[0]} {a[1]}" for a in calls(state_path)]


async def wait_for(
    check: Callable[[], Awaitable[Instance | None]], want: InstanceState, timeout_s: float = 10.0
) -> Instance:
    deadline = time.monotonic() + timeout_s
    while True:
        seen = await check()
        if seen is not None and seen.state is want:
            return seen
        assert time.monotonic() < deadline, f"still {seen} after {timeout_s}s, wanted {want}"
        await asyncio.sleep(0.05)


@synchronous
async def test_create_runs_the_app_with_every_setting_and_it_boots(provider: OvhProvider, state_path: Path) -> None:
    created = await provider.create("box-1")
    assert created.state is InstanceState.STARTING and created.agent_url is None and created.id == "box-1"
    app_id = created.label
    assert app_id is not None and app_id in fake.read_state(state_path)["apps"]
    (run,) = [a for a in calls(state_path) if a[:2] == ["app", "run"]]
    assert run[2:6] == ["-o", "json", "--token", TOKEN]  # options before the image, never after it
    assert run[-1] == "ghcr.io/acme/gpuq-agent:1"
    joined = " ".join(run)
    for part in (
        "--name box-1",
        "--flavor l40s-1-gpu",
        "--gpu 1",
        "--default-http-port 8000",
        "--unsecure-http",
        "--label gpuq=test",
        "--label gpuq-instance=box-1",
        "--volume gpuq-models@GRA:/root/.ollama:RW:cache",
        "--env GPUQ_AGENT_INSTANCE_ID=box-1",
        "--env OLLAMA_PRELOAD_MODELS=llama3.2:1b,qwen2.5:7b",
        "--env GPUQ_AGENT_READY_URL=https://cp.example/trigger",
    ):
        assert part in joined
    running = await wait_for(lambda: provider.get("box-1"), InstanceState.RUNNING)
    assert running.id == "box-1" and running.agent_url == f"https://{app_id}.app.gra.ai.cloud.ovh.net"
    assert await provider.get(app_id) == running  # by UUID too
    assert running.started_at is not None and running.provider == "ovh"
    app = fake.read_state(state_path)["apps"][app_id]
    assert app["spec"]["volumes"] == [
        {
            "dataStore": {"alias": "GRA", "container": "gpuq-models", "prefix": ""},
            "mountPath": "/root/.ollama",
            "permission": "RW",
            "cache": True,
        }
    ]
    assert [s for s, _ in app["_timeline"]] == ["QUEUED", "INITIALIZING", "RUNNING"]
    assert await provider.create("box-1") == running  # idempotent by name: no second app
    assert verbs(state_path).count("app run") == 1


@synchronous
async def test_stop_is_confirmed_and_idempotent_start_brings_it_back(provider: OvhProvider, state_path: Path) -> None:
    created = await provider.create("box-1")
    await wait_for(lambda: provider.get(created.id), InstanceState.RUNNING)
    stopped = await provider.stop("box-1")
    assert stopped.state is InstanceState.STOPPED and stopped.agent_url is None and stopped.stopped_at is not None
    history = [s for s, _ in fake.read_state(state_path)["apps"][str(created.label)]["_timeline"]]
    assert history[-2:] == ["STOPPING", "STOPPED"]
    before = verbs(state_path)
    assert (await provider.stop("box-1")).state is InstanceState.STOPPED
    assert verbs(state_path)[len(before) :] == ["app get"]  # already stopped: looked, did not stop again
    assert before.count("app stop") == 1 and before.count("app get") >= 3  # stop polled until STOPPED
    restarted = await provider.start("box-1")
    assert restarted.state is InstanceState.STARTING
    running = await wait_for(lambda: provider.get("box-1"), InstanceState.RUNNING)
    again = await provider.start("box-1")
    assert again.state is InstanceState.RUNNING and running.id == again.id
    assert verbs(state_path).count("app start") == 1


@synchronous
async def test_start_while_stopping_waits_for_the_stop_instead_of_failing(
    provider: OvhProvider, state_path: Path
) -> None:
    created = await provider.create("box-1")
    await wait_for(lambda: provider.get(created.id), InstanceState.RUNNING)
    fake.configure(state_path, timings={"STOPPING": 5.0})
    slow = OvhProvider(settings(stop_confirm_s=0.2))
    assert (await slow.stop("box-1")).state is InstanceState.STOPPING  # not confirmed within the limit
    assert (await provider.start("box-1")).state is InstanceState.STOPPING
    assert "app start" not in verbs(state_path)


@synchronous
async def test_a_box_that_finds_no_capacity_reads_as_stopped_with_the_reason(
    provider: OvhProvider, state_path: Path
) -> None:
    fake.configure(state_path, no_capacity=True)
    created = await provider.create("box-1")
    failed = await wait_for(lambda: provider.get(created.id), InstanceState.STOPPED)
    assert failed.detail == f"failed (app {created.label}): not enough resources available to start the app"


@synchronous
async def test_get_and_list_see_only_this_deployments_apps(provider: OvhProvider, state_path: Path) -> None:
    ours = await provider.create("box-1")
    assert (
        fake.main(["app", "run", "--token", TOKEN, "--name", "other", "--label", "gpuq=someone-else", "busybox"]) == 0
    )
    assert fake.main(["app", "run", "--token", TOKEN, "--name", "unlabelled", "busybox"]) == 0
    listed = await provider.list()
    assert [i.id for i in listed] == [ours.id] == ["box-1"]
    assert await provider.get("no-such-box") is None
    assert await provider.get("00000000-0000-4000-8000-000000000000") is None


@synchronous
async def test_delete_removes_the_app(provider: OvhProvider, state_path: Path) -> None:
    created = await provider.create("box-1")
    await wait_for(lambda: provider.get(created.id), InstanceState.RUNNING)
    await provider.stop("box-1")
    await provider.delete("box-1")
    deadline = time.monotonic() + 5
    while await provider.get(str(created.label)) is not None:
        assert time.monotonic() < deadline
        await asyncio.sleep(0.05)
    assert await provider.list() == []
    assert (await provider.stop("box-1")).state is InstanceState.GONE
    with pytest.raises(ProviderError):
        await provider.start("box-1")


@synchronous
async def test_cli_failures_become_provider_errors_without_the_token(
    provider: OvhProvider, state_path: Path, tmp_path: Path
) -> None:
    created = await provider.create("box-1")
    await wait_for(lambda: provider.get(created.id), InstanceState.RUNNING)
    await provider.stop("box-1")
    fake.configure(state_path, fail={"start": f"500 Internal Server Error (request had token {TOKEN})"})
    with pytest.raises(ProviderError) as failed:
        await provider.start("box-1")
    assert "500 Internal Server Error" in failed.value.message and TOKEN not in failed.value.message
    with pytest.raises(ProviderError, match="401"):
        await OvhProvider(settings(token="wrong")).get(created.id)
    with pytest.raises(ProviderError, match="cannot run"):
        await OvhProvider(settings(cli=str(tmp_path / "nowhere" / "ovhai"))).get("box-1")
    garbage = tmp_path / "garbage-ovhai"
    garbage.write_text("#!/bin/sh\necho 'this is not json'\n")
    garbage.chmod(0o755)
    with pytest.raises(ProviderError, match="JSON"):
        await OvhProvider(settings(cli=str(garbage))).get(created.id)


@synchronous
async def test_a_hung_cli_is_killed_at_the_timeout_and_the_loop_keeps_running(tmp_path: Path) -> None:
    hung = tmp_path / "hung-ovhai"
    marker = tmp_path / "pid"
    hung.write_text(f"#!/bin/sh\necho $$ > {marker}\nexec sleep 30\n")
    hung.chmod(0o755)
    ticks = 0

    async def ticker() -> None:
        nonlocal ticks
        while True:
            await asyncio.sleep(0.01)
            ticks += 1

    task = asyncio.create_task(ticker())
    started = time.monotonic()
    with pytest.raises(ProviderError, match=re.escape("did not answer within 0.5s")):
        await OvhProvider(settings(cli=str(hung), timeout_s=0.5)).get("00000000-0000-4000-8000-000000000000")
    elapsed = time.monotonic() - started
    task.cancel()
    assert 0.5 <= elapsed < 3.0
    assert ticks >= 20  # the event loop ran other work while the CLI hung
    assert exited(int(marker.read_text()))


@synchronous
async def test_the_fake_can_launch_a_real_process_as_the_box(state_path: Path) -> None:
    server = (
        "import http.server, os\n"
        "class H(http.server.BaseHTTPRequestHandler):\n"
        "    def do_GET(self):\n"
        "        body = (os.environ['GPUQ_AGENT_INSTANCE_ID'] + ' ' + os.environ['GPUQ_AGENT_PORT']).encode()\n"
        "        self.send_response(200); self.end_headers(); self.wfile.write(body)\n"
        "    def log_message(self, *a): pass\n"
        "http.server.HTTPServer(('127.0.0.1', int(os.environ['PORT'])), H).serve_forever()\n"
    )
    fake.configure(state_path, launch={"command": [sys.executable, "-c", server], "port_env": "GPUQ_AGENT_PORT"})
    provider = OvhProvider(settings())
    created = await provider.create("box-1")
    running = await wait_for(lambda: provider.get(created.id), InstanceState.RUNNING)
    assert running.agent_url is not None and running.agent_url.startswith("http://127.0.0.1:")
    deadline = time.monotonic() + 10
    async with httpx.AsyncClient() as http:
        while True:
            try:
                response = await http.get(running.agent_url)
                break
            except httpx.TransportError:
                assert time.monotonic() < deadline, "the launched box never answered"
                await asyncio.sleep(0.05)
        # It got the app's env (GPUQ_AGENT_INSTANCE_ID), and its port where the agent reads it.
        assert response.text == f"box-1 {running.agent_url.rsplit(':', 1)[1]}"
        await provider.stop("box-1")
        pid = fake.read_state(state_path)["apps"][str(created.label)]
        assert pid["_pid"] is None
        deadline = time.monotonic() + 10
        while True:
            try:
                await http.get(running.agent_url)
            except httpx.TransportError:
                break
            assert time.monotonic() < deadline, "the box kept serving after stop"
            await asyncio.sleep(0.05)


def test_settings_come_from_ovh_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OVH_FLAVOR", "h100-1-gpu")
    monkeypatch.setenv("OVH_GPU", "2")
    monkeypatch.setenv("OVH_UNSECURE_HTTP", "false")
    monkeypatch.setenv("OVH_APP_TOKEN", "app-token")
    loaded = OvhSettings()
    assert (loaded.flavor, loaded.gpu, loaded.unsecure_http) == ("h100-1-gpu", 2, False)
    assert OvhProvider(loaded).agent_auth_headers() == {"Authorization": "Bearer app-token"}
    assert OvhProvider(OvhSettings(app_token="x", unsecure_http=True)).agent_auth_headers() == {}
    basic = OvhProvider(OvhSettings(app_token="", app_basic_auth="ai-user:pw", unsecure_http=False))
    assert basic.agent_auth_headers() == {"Authorization": "Basic YWktdXNlcjpwdw=="}
    with pytest.raises(ProviderError, match="OVH_APP_TOKEN"):
        OvhProvider(OvhSettings(app_token="", unsecure_http=False)).agent_auth_headers()
    with pytest.raises(ProviderError, match="OVH_IMAGE"):
        OvhProvider(OvhSettings()).run_args("box")
