"""``gpuq offers`` / ``gpuq instances`` against the fake Vast cloud."""

from __future__ import annotations

import json
import re
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from shared.fakes.vast import FakeVastConfig, FakeVastControl, FakeVastServer, serve_in_thread
from shared.tools.vast_cli import main
from tests.servers import wait_until

KEY = "acct-key-gpuq-cli"


@pytest.fixture(scope="module")
def fake() -> Iterator[FakeVastServer]:
    config = FakeVastConfig(
        api_key=KEY,
        command=[sys.executable, "-c", "import time; time.sleep(3600)"],
        schedule_delay_s=0.02,
        loading_delay_s=0.05,
        restart_loading_delay_s=0.02,
        stop_delay_s=0.02,
        stop_grace_s=2.0,
    )
    with serve_in_thread(config) as server:
        yield server


@pytest.fixture
def control(fake: FakeVastServer, monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeVastControl]:
    monkeypatch.setenv("VASTAI_API_KEY", KEY)
    monkeypatch.setenv("VAST_URL", fake.url)
    ctl = FakeVastControl(fake.url, KEY)
    ctl.reset()
    yield ctl
    ctl.reset()
    ctl.close()


def gpuq(tmp_path: Path, *argv: str) -> int:
    """``gpuq <argv> --data-dir TMP``: the lead's ``gpuq`` passes everything from the group name on."""
    return main([*argv, "--data-dir", str(tmp_path)])


def test_offers_lists_matching_offers_cheapest_first(
    control: FakeVastControl, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert gpuq(tmp_path, "offers", "--gpu", "RTX_4090", "--max-dph", "0.5") == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split() == ["ID", "GPU", "VRAM", "$/H", "RELIABILITY", "LOCATION"]
    assert [line.split()[0] for line in lines[1:]] == ["5100002", "5100003"]  # verified, reliable enough
    assert "1x RTX 4090" in lines[1] and "25 GB" in lines[1] and "99.5%" in lines[1]

    assert gpuq(tmp_path, "offers", "--gpu", "H100 SXM", "--min-vram", "80", "--json") == 0
    rows = json.loads(capsys.readouterr().out)
    assert [r["id"] for r in rows] == [5100005, 5100006] and rows[0]["dph_total"] < rows[1]["dph_total"]


def test_instances_create_list_stop_start_destroy(
    control: FakeVastControl, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert (
        gpuq(
            tmp_path,
            "instances",
            "create",
            "--offer",
            "5100002",
            "--image",
            "tiny/img",
            "--env",
            "FOO=bar",
            "--env",
            "-p 8000:8000",
            "--onstart",
            "echo hi",
            "--disk",
            "12",
        )
        == 0
    )
    created = re.search(r"created instance (\d+)", capsys.readouterr().out)
    assert created is not None
    vid = int(created.group(1))
    inst = control.instance(vid) or {}
    assert inst["env"] == {"FOO": "bar", "-p 8000:8000": "1"} and inst["label"] == "gpuq" and inst["disk"] == 12
    wait_until(lambda: (control.instance(vid) or {}).get("actual_status") == "running", 10, "running")

    assert gpuq(tmp_path, "instances") == 0
    table = capsys.readouterr().out.splitlines()
    assert table[0].split()[:5] == ["ID", "BOX", "STATE", "$/H", "UPTIME"]
    row = next(line for line in table if line.startswith(str(vid)))
    assert "running" in row and "$0.342" in row and "gpuq" in row

    assert gpuq(tmp_path, "instances", "stop", str(vid)) == 0
    assert re.search(rf"instance {vid}: (stopping|stopped)", capsys.readouterr().out)
    wait_until(lambda: (control.instance(vid) or {}).get("actual_status") == "stopped", 10, "stopped")
    assert gpuq(tmp_path, "instances", "start", str(vid)) == 0
    assert f"instance {vid}: starting" in capsys.readouterr().out

    assert gpuq(tmp_path, "instances", "destroy", str(vid)) == 2  # no --yes and no terminal
    assert gpuq(tmp_path, "instances", "destroy", str(vid), "-y") == 0
    assert f"instance {vid}: gone" in capsys.readouterr().out and control.instance(vid) is None


def test_a_bad_key_is_reported_without_the_key(
    control: FakeVastControl, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("VASTAI_API_KEY", "wrong-key-123")
    assert gpuq(tmp_path, "instances") == 1
    err = capsys.readouterr().err
    assert "provider_auth_error" in err and "wrong-key-123" not in err
