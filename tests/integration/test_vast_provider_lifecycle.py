"""The Vast provider's lifecycle against the fake Vast cloud over real sockets: rent, start, stop,
replace, reconcile, list and reap; boxes are real local processes."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from shared.boxes.providers.vast import INTENT_ENV
from shared.fakes.ollama import FakeOllamaConfig
from shared.fakes.ollama import serve_in_thread as serve_ollama
from shared.fakes.vast import FakeVastControl, FakeVastServer, serve_in_thread
from shared.models import InstanceState
from shared.security.signing import RequestSigner
from tests.integration import vast_provider_setup
from tests.integration.vast_provider_setup import (
    AGENT,
    SECRET,
    TINY,
    fake_cloud_config,
    get_json,
    healthy,
    provider,
    run,
    run_get,
    wait_state,
)
from tests.servers import wait_until

KEY = vast_provider_setup.KEY  # the account key the ``control`` fixture (conftest) reads from this module


@pytest.fixture(scope="module")
def ollama() -> Iterator[str]:
    with serve_ollama(FakeOllamaConfig(token_delay_s=0.001, load_delay_s=0.05)) as server:
        yield server.url


@pytest.fixture(scope="module")
def fake(tmp_path_factory: pytest.TempPathFactory, ollama: str) -> Iterator[FakeVastServer]:
    with serve_in_thread(fake_cloud_config(tmp_path_factory.mktemp("fake-vast"), ollama)) as server:
        yield server


def test_cold_start_from_stopped_finds_the_agent_at_its_new_port(
    fake: FakeVastServer, control: FakeVastControl, tmp_path: Path
) -> None:
    p = provider(fake, tmp_path)
    assert run_get(p).state is InstanceState.GONE  # nothing rented yet
    first = run(p.start("vast-1"))
    assert first.state is InstanceState.STARTING and p.creates_sent() == 1
    running = wait_state(p, InstanceState.RUNNING)
    seen = get_json(running.agent_url)
    vast_id = p.current_vast_id()
    assert seen["CONTAINER_ID"] == str(vast_id) and seen["has_container_key"] is True
    assert seen["GPUQ_AGENT_INSTANCE_ID"] == "vast-1" and seen["GPUQ_AGENT_PROVIDER"] == "vast"
    assert running.agent_url.endswith(f":{seen['GPUQ_AGENT_PORT']}")

    stopped = run(p.stop("vast-1"))
    assert stopped.state in (InstanceState.STOPPING, InstanceState.STOPPED)
    wait_state(p, InstanceState.STOPPED)

    control.reset_calls()
    started = time.monotonic()
    assert run(p.start("vast-1")).state is InstanceState.STARTING
    again = wait_state(p, InstanceState.RUNNING)
    after = get_json(again.agent_url)
    elapsed = time.monotonic() - started
    assert after["CONTAINER_ID"] == str(vast_id) and again.agent_url != running.agent_url
    calls = control.calls()
    assert calls.get("create", 0) == 0 and calls["manage"] == 1
    print(f"\nstopped → agent answering: {elapsed:.2f}s; calls: {calls}")


def test_the_real_agent_boots_on_a_rented_box_and_serves_a_job(
    fake: FakeVastServer, control: FakeVastControl, tmp_path: Path
) -> None:
    p = provider(fake, tmp_path, default_image=AGENT)
    started = time.monotonic()
    run(p.start("vast-1"))
    box = wait_state(p, InstanceState.RUNNING)
    wait_until(lambda: healthy(box.agent_url), 20, "agent ready")
    ready_s = time.monotonic() - started
    health = httpx.get(box.agent_url + "/health").json()
    assert health["status"] == "ready" and health["instance_id"] == "vast-1"
    body = (
        b'{"job_id":"job_vast1","attempt":1,"model":"llama3.2:1b","prompt":"hi","timeout_s":30,'
        b'"report_url":"http://127.0.0.1:9/none","report_token":"1.t"}'
    )
    headers = RequestSigner(SECRET).sign("POST", "/v1/stream", body)
    lines = httpx.post(box.agent_url + "/v1/stream", content=body, headers=headers, timeout=30).text.splitlines()
    assert lines[-1] == '{"done": true, "status": "succeeded"}'
    env = control.instance(p.current_vast_id() or 0)
    assert env is not None and env["env"]["GPUQ_AGENT_SECRET"] == SECRET and env["env"]["-p 8000:8000"] == "1"
    print(f"\nrent → real agent ready: {ready_s:.2f}s")


def test_a_stuck_restart_is_replaced_once_and_the_stuck_box_destroyed(
    fake: FakeVastServer, control: FakeVastControl, tmp_path: Path
) -> None:
    p = provider(fake, tmp_path, restart_deadline_s=1.0)
    run(p.start("vast-1"))
    wait_state(p, InstanceState.RUNNING)
    stuck_id = p.current_vast_id()
    assert stuck_id is not None
    stuck_machine = control.instance(stuck_id)["machine_id"]  # type: ignore[index]
    run(p.stop("vast-1"))
    wait_state(p, InstanceState.STOPPED)

    control.set(stuck_starts=1)
    control.reset_calls()
    assert run(p.start("vast-1")).state is InstanceState.STARTING
    assert run_get(p).state is InstanceState.STARTING and p.current_vast_id() == stuck_id
    box = wait_state(p, InstanceState.RUNNING)  # polling get() replaces the stuck box past the deadline
    new_id = p.current_vast_id()
    assert new_id is not None and new_id != stuck_id and box.agent_url
    for _ in range(3):  # later calls never rent again
        run(p.get("vast-1"))
        run(p.start("vast-1"))
    assert control.calls()["create"] == 1
    assert control.instance(stuck_id) is None and stuck_id in control.destroyed()
    assert control.instance(new_id)["machine_id"] != stuck_machine  # type: ignore[index]
    records = {r.id: r for r in run(p.records())}
    assert records[stuck_id].replaced_by == new_id and records[stuck_id].destroyed_at is not None
    assert records[new_id].logical_id == "vast-1" and records[new_id].price_per_hour > 0


def test_a_lost_create_answer_is_reconciled_without_a_second_rental(
    fake: FakeVastServer, control: FakeVastControl, tmp_path: Path
) -> None:
    p = provider(fake, tmp_path)
    control.set(create_lost_responses=1)
    first = run(p.start("vast-1"))
    assert first.state is InstanceState.STARTING
    wait_state(p, InstanceState.RUNNING)
    for _ in range(2):
        run(p.start("vast-1"))
    assert control.calls()["create"] == 1 and len(control.instances()) == 1
    adopted = control.instances()[0]
    assert adopted["id"] == p.current_vast_id() and adopted["env"][INTENT_ENV]


def test_list_shows_ours_under_the_logical_id_and_reap_destroys_long_stopped(
    fake: FakeVastServer, control: FakeVastControl, tmp_path: Path
) -> None:
    p = provider(fake, tmp_path)
    run(p.start("vast-1"))
    wait_state(p, InstanceState.RUNNING)
    spare = run(p.create_instance(5100004, image=TINY, env={"-p 8000:8000": "1"}))
    other = run(p.create_instance(5100005, image=TINY, label="someone-else"))
    listed = {i.id: i for i in run(p.list())}
    assert set(listed) == {"vast-1", str(spare)} and str(other) not in listed
    assert listed["vast-1"].label == "gpuq" and listed["vast-1"].price_per_hour > 0

    wait_state(p, InstanceState.RUNNING, instance_id=str(spare))
    assert run(p.stop(str(spare))).state in (InstanceState.STOPPING, InstanceState.STOPPED)
    wait_state(p, InstanceState.STOPPED, instance_id=str(spare))
    assert run(p.reap_stopped(older_than_s=3600)) == []
    assert run(p.reap_stopped(older_than_s=0)) == [str(spare)]
    assert control.instance(spare) is None and control.instance(other) is not None
    assert run_get(p).state is InstanceState.RUNNING  # the running box is never reaped
    record = next(r for r in run(p.records()) if r.id == spare)
    assert record.stopped_at is not None and record.destroyed_at is not None
    assert [state for _, state in record.transitions][-2:] == ["stopped", "gone"]


def test_destroy_mode_ends_billing_and_the_next_start_rents_anew(
    fake: FakeVastServer, control: FakeVastControl, tmp_path: Path
) -> None:
    p = provider(fake, tmp_path, stop_mode="destroy")
    run(p.start("vast-1"))
    wait_state(p, InstanceState.RUNNING)
    first = p.current_vast_id()
    assert run(p.stop("vast-1")).state is InstanceState.GONE
    assert p.current_vast_id() is None and control.instance(first or 0) is None
    run(p.start("vast-1"))
    assert p.current_vast_id() not in (None, first) and control.calls()["create"] == 2


def test_a_refused_stop_is_retried_and_confirmed(
    fake: FakeVastServer, control: FakeVastControl, tmp_path: Path
) -> None:
    p = provider(fake, tmp_path)
    run(p.start("vast-1"))
    wait_state(p, InstanceState.RUNNING)
    control.set(stop_fails=1)
    control.reset_calls()
    assert run(p.stop("vast-1")).state in (InstanceState.STOPPING, InstanceState.STOPPED)
    assert control.calls()["manage"] == 2


def test_an_existing_instance_from_settings_is_driven(
    fake: FakeVastServer, control: FakeVastControl, tmp_path: Path
) -> None:
    setup = provider(fake, tmp_path / "setup")
    existing = run(setup.create_instance(5100003, image=TINY, env={"-p 8000:8000": "1"}))
    p = provider(fake, tmp_path, instance_id=str(existing))
    box = wait_state(p, InstanceState.RUNNING)
    assert p.current_vast_id() == existing and box.id == "vast-1"
    assert get_json(box.agent_url)["CONTAINER_ID"] == str(existing)
    by_number = provider(fake, tmp_path / "numeric", logical_id=str(existing))  # GPUQ_INSTANCE_ID=<vast id>
    assert by_number.current_vast_id() == existing
    assert run_get(by_number, str(existing)).state is InstanceState.RUNNING
