"""Many functions instances, one deployment: three functions processes, each with its own data dir (its
own ``/tmp``, as Cloud Functions instances have), sharing only the store and the queue. On SQLite (one
file) and on the Firestore emulator.

- dispatches of the same jobs racing on all three rent exactly the boxes the pool needs, no more;
- a key's rate limit holds across the three, not three times over;
- a signed agent request seen by one is refused as a replay by another.
"""

from __future__ import annotations

import functools
import importlib.util
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest

from shared.fakes.vast import FakeVastControl
from shared.security.signing import TASK_SIGNATURE_HEADER, NonceCache, agent_signer, sign_task
from shared.tools.devstack import DevStack, free_port
from tests.contract.emulator import FirestoreEmulator
from tests.fleet.conftest import VAST_POOLS as POOLS
from tests.fleet.conftest import StackFactory, client_for, stand_in_stats
from tests.servers import MODEL, wait_until

PROJECT = "gpuq-fleet-instances"

Peers = Callable[[DevStack, int], list[str]]


@pytest.fixture(params=["sqlite", "firestore"])
def store_choice(request: pytest.FixtureRequest) -> dict[str, Any]:
    """What the stack's settings say about the store (and the environment its processes need)."""
    if request.param == "sqlite":
        return {"overrides": {}, "extra_env": {}}
    emulator: FirestoreEmulator = request.getfixturevalue("firestore_emulator")
    emulator.reset(PROJECT)
    return {
        "overrides": {"store": "firestore", "firestore_project": PROJECT},
        "extra_env": {"FIRESTORE_EMULATOR_HOST": emulator.host},
    }


@pytest.fixture
def peers(tmp_path: Path) -> Iterator[Peers]:
    """``peers(stack, n)``: n more functions processes of the stack's deployment; returns their URLs."""
    started: list[subprocess.Popen[bytes]] = []
    source = importlib.util.find_spec("functions.devserver")
    assert source is not None and source.origin is not None
    origin: str = source.origin

    def start(stack: DevStack, n: int) -> list[str]:
        urls = []
        for i in range(n):
            own = tmp_path / f"instance-{len(started)}"  # its own /tmp: nothing on disk is shared
            port = free_port()
            env = {
                **os.environ,
                **stack.env(),
                "GPUQ_DATA_DIR": str(own),
                "GPUQ_SQLITE_FILE": str(stack.settings.sqlite_path()),
                "VASTAI_STATE_DIR": str(own / "vast"),
                "WORKERS": "1",
                "THREADS": "16",
            }
            argv = [sys.executable, "-m", "functions_framework", "--target", "gpuq", "--source", origin]
            own.mkdir(parents=True)
            with open(own / "functions.log", "ab") as log:
                popen = subprocess.Popen(
                    [*argv, "--host", "127.0.0.1", "--port", str(port)],
                    env=env,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                )
            started.append(popen)
            url = f"http://127.0.0.1:{port}"
            wait_until(functools.partial(_answers, url), 30, f"functions instance {i} to answer")
            urls.append(url)
        return urls

    yield start
    for popen in started:
        os.killpg(popen.pid, signal.SIGTERM)
        popen.wait(timeout=15)


def _answers(url: str) -> bool:
    try:
        return httpx.get(url + "/healthz", timeout=1.0).status_code == 200
    except httpx.HTTPError:
        return False


def _vast_stack(fleet_stack: StackFactory, tmp_path: Path, choice: dict[str, Any], **overrides: Any) -> DevStack:
    pools = tmp_path / "pools.toml"
    pools.write_text(POOLS)
    return fleet_stack(
        provider="vast-fake",
        vast_port=free_port(),
        pools_file=pools,
        token_delay_s=0.02,
        overrides=choice["overrides"] | overrides,
        extra_env=choice["extra_env"],
    )


def test_dispatches_racing_on_three_instances_rent_only_what_the_pool_needs(
    fleet_stack: StackFactory, peers: Peers, tmp_path: Path, store_choice: dict[str, Any]
) -> None:
    stack = _vast_stack(fleet_stack, tmp_path, store_choice)
    instances = [stack.url, *peers(stack, 2)]
    client = client_for(stack)
    run = uuid.uuid4().hex[:8]
    jobs = [
        client.submit({"model": MODEL, "prompt": f"race {run} {i}", "options": {"num_predict": 40}}) for i in range(6)
    ]

    def dispatch(target: tuple[str, str]) -> str:  # the job's first task, as Cloud Tasks sends it, to one instance
        url, job_id = target
        body = f'{{"kind":"job","job_id":"{job_id}","seq":0}}'.encode()
        headers = {
            TASK_SIGNATURE_HEADER: sign_task(stack.settings.task_secret, body),
            "Content-Type": "application/json",
        }
        answer = httpx.post(url + "/dispatch", content=body, headers=headers, timeout=60)
        assert answer.status_code == 200, answer.text
        return str(answer.json()["outcome"])

    # Each job's dispatch reaches all three at once, on top of the queue's own delivery.
    with ThreadPoolExecutor(18) as pool:
        outcomes = list(pool.map(dispatch, [(url, job["id"]) for job in jobs for url in instances]))
    assert any(o.startswith("snoozed:provisioning") for o in outcomes), outcomes  # they did ask for boxes
    done = [client.wait(job["id"], timeout_s=120) for job in jobs]
    assert [j["status"] for j in done] == ["succeeded"] * 6
    vast = FakeVastControl(stack.vast_url, stack.vast_api_key)
    assert vast.calls()["create"] == 2 and len(vast.instances()) == 2  # one rental per box, whoever asked
    per_prompt = stand_in_stats(stack)["generations_by_prompt"]
    assert sorted(per_prompt.get(f"race {run} {i}", 0) for i in range(6)) == [1] * 6  # each generated once
    wait_until(lambda: not stack.box_running(), 60, "both rented boxes to stop")
    assert not any((tmp_path / f"instance-{i}" / "vast").exists() for i in range(2))  # nothing kept on a host
    vast.close()
    client.close()


def test_a_rate_limit_and_replay_protection_hold_across_instances(
    fleet_stack: StackFactory, peers: Peers, tmp_path: Path, store_choice: dict[str, Any]
) -> None:
    stack = _vast_stack(fleet_stack, tmp_path, store_choice, rate_limit_per_min=30.0)
    instances = [stack.url, *peers(stack, 2)]
    headers = {"Authorization": f"Bearer {stack.api_key}"}
    started = time.monotonic()
    with httpx.Client(timeout=30) as http:
        answers = [http.get(instances[i % 3] + "/v1/models", headers=headers) for i in range(45)]
    elapsed = time.monotonic() - started
    ok = [a for a in answers if a.status_code == 200]
    refused = [a for a in answers if a.status_code == 429]
    assert len(ok) + len(refused) == 45
    # A bucket of 30, refilled at 0.5 a second: three private buckets would have let all 45 through.
    assert 30 <= len(ok) <= 30 + int(elapsed * 0.5) + 1
    assert all(int(a.headers["Retry-After"]) >= 1 and a.json()["error"]["code"] == "rate_limited" for a in refused)
    assert {a.url.port for a in refused} == {httpx.URL(url).port for url in instances}  # each refuses, once spent

    body = b'{"instance_id": "not-a-box", "event": "drain"}'
    signer = agent_signer(stack.settings.agent_master_secret, "not-a-box", NonceCache())
    signed = signer.sign("POST", "/trigger", body)
    signed["Content-Type"] = "application/json"
    first = httpx.post(instances[1] + "/trigger", content=body, headers=signed, timeout=10)
    assert first.status_code == 200 and first.json()["reason"] == "not_in_a_pool"
    for other in (instances[0], instances[2]):
        replay = httpx.post(other + "/trigger", content=body, headers=signed, timeout=10)
        assert replay.status_code == 401 and replay.json()["error"]["code"] == "replayed_request"
