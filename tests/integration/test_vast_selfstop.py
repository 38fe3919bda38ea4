"""The agent's self-stop on Vast: the real ``vastai`` CLI pointed at the fake, confirmed by a GET, and
the REST fallback when the CLI's call failed (it exits 0 anyway) or the CLI is missing."""

from __future__ import annotations

import asyncio
import logging
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from agent.selfstop import watch_idle
from agent.state import AgentState, Phase
from agent.vast_selfstop import VastSelfStop
from shared.boxes.providers.vast import RetryPolicy
from shared.errors import ProviderError
from shared.fakes.vast import FakeVastConfig, FakeVastControl, FakeVastServer, serve_in_thread
from shared.models import InstanceState
from shared.settings import VastSelfStopSettings
from tests.required_tools import VASTAI_CLI, require_tool
from tests.servers import wait_until

KEY = "acct-key-selfstop"
VASTAI = VASTAI_CLI
FAST = RetryPolicy(max_attempts=3, base_delay_s=0.01, max_delay_s=0.05, timeout_s=10.0, min_interval_s={})

# A "box" whose only job is to stop itself with VastSelfStop, from the env the fake gives every
# instance (CONTAINER_ID, CONTAINER_API_KEY, VAST_URL), then wait for the SIGTERM like the agent.
SELF_STOPPING_BOX = """
import asyncio, logging, signal, sys, time
from agent.vast_selfstop import VastSelfStop
from shared.settings import VastSelfStopSettings
logging.basicConfig(level=logging.INFO, format="%(name)s: %(message)s")
signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
result = asyncio.run(VastSelfStop(VastSelfStopSettings()).stop("vast-1"))
print("SELF-STOP", result.state.value, flush=True)
while True:
    time.sleep(1)
"""


@pytest.fixture(scope="module")
def fake(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FakeVastServer]:
    tmp = tmp_path_factory.mktemp("selfstop")
    box = tmp / "self_stopping_box.py"
    box.write_text(SELF_STOPPING_BOX)
    env = {
        "VASTAI_NO_UPDATE_CHECK": "1",
        "HOME": str(tmp),
        "XDG_CONFIG_HOME": str(tmp / "config"),
        "XDG_CACHE_HOME": str(tmp / "cache"),
        "XDG_STATE_HOME": str(tmp / "state"),
        "GPUQ_AGENT_VASTAI_CLI": str(VASTAI),
    }
    config = FakeVastConfig(
        api_key=KEY,
        command=[sys.executable, "-c", "import time; time.sleep(3600)"],
        image_commands={"self-stopping": [sys.executable, str(box)]},
        extra_env=env,
        schedule_delay_s=0.05,
        loading_delay_s=0.05,
        restart_loading_delay_s=0.05,
        stop_delay_s=1.0,  # room for the box to finish the CLI and its confirming GET before SIGTERM (as on Vast)
        stop_grace_s=3.0,
        log_dir=tmp / "logs",
    )
    with serve_in_thread(config) as server:
        yield server


@pytest.fixture
def cli_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The CLI's config/cache go to a fresh folder (the self-stop passes this process's env on to it)."""
    for name, sub in (
        ("HOME", ""),
        ("XDG_CONFIG_HOME", "config"),
        ("XDG_CACHE_HOME", "cache"),
        ("XDG_STATE_HOME", "state"),
    ):
        monkeypatch.setenv(name, str(tmp_path / sub))
    monkeypatch.setenv("VASTAI_NO_UPDATE_CHECK", "1")


def running_box(fake: FakeVastServer, control: FakeVastControl, image: str = "sleeper") -> dict[str, Any]:
    created = httpx.put(
        f"{fake.url}/api/v0/asks/5100002/",
        headers={"Authorization": f"Bearer {KEY}"},
        json={"client_id": "me", "image": image, "env": {"-p 8000:8000": "1"}, "label": "gpuq"},
    )
    vid = int(created.json()["new_contract"])
    wait_until(lambda: (control.instance(vid) or {}).get("actual_status") == "running", 10, "box running")
    return control.instance(vid) or {}


def self_stop(fake: FakeVastServer, box: dict[str, Any], **settings: Any) -> VastSelfStop:
    values: dict[str, Any] = {
        "container_id": str(box["id"]),
        "container_api_key": box["container_key"],
        "vast_url": fake.url,
        "cli_path": str(VASTAI),
        "confirm_s": 2.0,
        "backoff_s": 0.05,
    }
    values.update(settings)
    return VastSelfStop(VastSelfStopSettings(**values), retry=FAST)


def needs_cli() -> None:
    require_tool(VASTAI, "venv")


def test_self_stop_through_the_real_cli_is_confirmed_by_a_get(
    fake: FakeVastServer, control: FakeVastControl, cli_home: None, caplog: pytest.LogCaptureFixture
) -> None:
    needs_cli()
    box = running_box(fake, control)
    control.reset_calls()
    caplog.set_level(logging.INFO, logger="gpuq.agent.vast_selfstop")
    result = asyncio.run(self_stop(fake, box).stop("vast-1"))
    assert result.id == "vast-1" and result.state in (InstanceState.STOPPING, InstanceState.STOPPED)
    calls = control.calls()
    assert calls["manage"] == 1 and calls["show"] >= 1  # one stop, by the CLI; then our GET
    assert "via vastai CLI confirmed" in caplog.text and box["container_key"] not in caplog.text
    wait_until(lambda: (control.instance(box["id"]) or {}).get("actual_status") == "stopped", 10, "box stopped")


def test_when_vast_refuses_the_cli_stop_the_rest_fallback_stops_the_box(
    fake: FakeVastServer, control: FakeVastControl, cli_home: None, caplog: pytest.LogCaptureFixture
) -> None:
    needs_cli()
    box = running_box(fake, control)
    control.set(stop_fails=1)  # the CLI's PUT gets {"success": false}; the CLI still exits 0
    control.reset_calls()
    caplog.set_level(logging.INFO, logger="gpuq.agent.vast_selfstop")
    result = asyncio.run(self_stop(fake, box, confirm_s=0.3).stop("vast-1"))
    assert result.state in (InstanceState.STOPPING, InstanceState.STOPPED)
    assert control.calls()["manage"] == 2  # the CLI's refused one, then ours
    assert "exited 0" in caplog.text and "using the REST API" in caplog.text and "via REST confirmed" in caplog.text
    wait_until(lambda: (control.instance(box["id"]) or {}).get("actual_status") == "stopped", 10, "box stopped")


def test_without_the_cli_the_rest_api_stops_the_box_and_retries(
    fake: FakeVastServer, control: FakeVastControl, cli_home: None
) -> None:
    box = running_box(fake, control)
    control.set(stop_fails=2)
    control.reset_calls()
    result = asyncio.run(self_stop(fake, box, cli_path="/nonexistent/vastai").stop("vast-1"))
    assert result.state in (InstanceState.STOPPING, InstanceState.STOPPED)
    assert control.calls()["manage"] == 3


def test_an_unconfirmable_stop_raises_after_the_cli_and_every_rest_try(
    fake: FakeVastServer, control: FakeVastControl, cli_home: None
) -> None:
    box = running_box(fake, control)
    control.set(stop_fails=10)
    with pytest.raises(ProviderError) as caught:
        asyncio.run(self_stop(fake, box, cli_path="/nonexistent/vastai", rest_attempts=3).stop("vast-1"))
    assert caught.value.code == "provider_stop_failed"
    assert (control.instance(box["id"]) or {})["intended_status"] == "running"


def test_the_agents_idle_watch_accepts_the_vast_self_stop(
    fake: FakeVastServer, control: FakeVastControl, cli_home: None
) -> None:
    box = running_box(fake, control)
    stopper = self_stop(fake, box, cli_path="/nonexistent/vastai")

    async def idle_then_stop() -> None:
        state = AgentState(phase=Phase.READY)
        await asyncio.wait_for(watch_idle(state, stopper, "vast-1", lambda: 0.0), timeout=20)
        assert state.phase is Phase.STOPPING

    asyncio.run(idle_then_stop())
    assert (control.instance(box["id"]) or {})["intended_status"] == "stopped"


def test_a_box_stops_itself_from_inside_with_only_the_env_vast_gives_it(
    fake: FakeVastServer, control: FakeVastControl
) -> None:
    needs_cli()
    box = running_box(fake, control, image="self-stopping")  # runs SELF_STOPPING_BOX with the CLI
    wait_until(
        lambda: (control.instance(box["id"]) or {}).get("actual_status") == "stopped", 20, "the box stopped itself"
    )
    assert control.calls()["manage"] == 1 and (control.instance(box["id"]) or {})["exit_code"] == 0
    log_dir = fake.state.config.log_dir
    assert log_dir is not None
    output = (log_dir / f"instance-{box['id']}.log").read_text()
    assert "via vastai CLI confirmed" in output and "SELF-STOP stopping" in output
    assert box["container_key"] not in output
