"""The Vast provider against the fake Vast cloud over real sockets: boxes are real local processes."""

from __future__ import annotations

import asyncio
import sys
import time
from collections.abc import Coroutine, Iterator
from pathlib import Path
from typing import Any, TypeVar

import httpx
import pytest
from pydantic import SecretStr

from shared.boxes.providers.vast import (
    INTENT_ENV,
    NoCapacity,
    RetryPolicy,
    VastAuthError,
    VastProvider,
    VastRateLimited,
    VastSettings,
    agent_url_of,
    build_vast_provider,
    instance_state,
)
from shared.errors import ProviderError
from shared.fakes.ollama import FakeOllamaConfig
from shared.fakes.ollama import serve_in_thread as serve_ollama
from shared.fakes.vast import FakeVastConfig, FakeVastControl, FakeVastServer, serve_in_thread
from shared.models import Instance, InstanceState
from shared.security.signing import RequestSigner
from tests.servers import wait_until

T = TypeVar("T")
KEY = "acct-key-for-tests"
TINY = "gpuq-test/tiny-http"
AGENT = "gpuq/agent:latest"
SECRET = "vast-agent-secret"

TINY_SERVER = """
import json, os, signal, sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
SEEN = {k: os.environ.get(k) for k in ("CONTAINER_ID", "GPUQ_AGENT_PORT", "GPUQ_AGENT_INSTANCE_ID",
                                        "GPUQ_AGENT_PROVIDER", "VAST_URL", "FOO")}
SEEN["has_container_key"] = bool(os.environ.get("CONTAINER_API_KEY"))
class H(BaseHTTPRequestHandler):
    def do_GET(self):
        body = json.dumps(SEEN).encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    def log_message(self, *args):
        pass
ThreadingHTTPServer((os.environ["GPUQ_AGENT_HOST"], int(os.environ["GPUQ_AGENT_PORT"])), H).serve_forever()
"""


def run(coro: Coroutine[Any, Any, T]) -> T:
    """One provider call in a fresh event loop, as the (sync) control plane makes them."""
    return asyncio.run(coro)


def run_get(p: VastProvider, instance_id: str = "vast-1") -> Instance:
    instance = run(p.get(instance_id))
    assert instance is not None
    return instance


@pytest.fixture(scope="module")
def ollama() -> Iterator[str]:
    with serve_ollama(FakeOllamaConfig(token_delay_s=0.001, load_delay_s=0.05)) as server:
        yield server.url


@pytest.fixture(scope="module")
def fake(tmp_path_factory: pytest.TempPathFactory, ollama: str) -> Iterator[FakeVastServer]:
    tmp = tmp_path_factory.mktemp("fake-vast")
    script = tmp / "tiny_http.py"
    script.write_text(TINY_SERVER)
    config = FakeVastConfig(
        api_key=KEY,
        command=[sys.executable, str(script)],
        image_commands={AGENT: [sys.executable, "-m", "agent"]},
        extra_env={"GPUQ_AGENT_OLLAMA_URL": ollama, "GPUQ_LOG_LEVEL": "WARNING"},
        schedule_delay_s=0.05,
        loading_delay_s=0.1,
        restart_loading_delay_s=0.05,
        stop_delay_s=0.05,
        stop_grace_s=3.0,
        log_dir=tmp / "logs",
    )
    with serve_in_thread(config) as server:
        yield server


FAST = RetryPolicy(max_attempts=5, base_delay_s=0.01, max_delay_s=0.05, timeout_s=10.0, min_interval_s={})


def provider(
    fake: FakeVastServer,
    tmp_path: Path,
    *,
    key: str = KEY,
    retry: RetryPolicy = FAST,
    logical_id: str = "vast-1",
    **settings: Any,
) -> VastProvider:
    base: dict[str, Any] = {
        "api_key": key,
        "url": fake.url,
        "default_image": TINY,
        "onstart": "",
        "restart_deadline_s": 30.0,
        "default_disk_gb": 20.0,
    }
    base.update(settings)
    return build_vast_provider(
        VastSettings(**base),
        logical_id=logical_id,
        state_dir=tmp_path / "vast",
        retry=retry,
        agent_env={
            "GPUQ_AGENT_SECRET": SECRET,
            "GPUQ_AGENT_PRELOAD_MODELS": "llama3.2:1b",
            "GPUQ_AGENT_IDLE_GRACE_S": "3600",
        },
        observe_ttl_s=0.0,
    )


def wait_state(p: VastProvider, state: InstanceState, timeout_s: float = 15.0, instance_id: str = "vast-1") -> Any:
    seen: list[Any] = []

    def check() -> bool:
        seen[:] = [run(p.get(instance_id))]
        return (
            seen[0] is not None
            and seen[0].state is state
            and (state is not InstanceState.RUNNING or seen[0].agent_url is not None)
        )

    wait_until(check, timeout_s, f"{instance_id} {state.value}", poll_s=0.05)
    return seen[0]


def get_json(url: str) -> dict[str, Any]:
    deadline = time.monotonic() + 10
    while True:
        try:
            return dict(httpx.get(url, timeout=2.0).json())
        except httpx.HTTPError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.02)


def healthy(url: str) -> bool:
    try:
        return httpx.get(url + "/health", timeout=2.0).status_code == 200
    except httpx.HTTPError:
        return False


# --------------------------------------------------------------------------------------------
# Pure mapping
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("row", "state"),
    [
        (None, InstanceState.GONE),
        ({"actual_status": "running", "intended_status": "running"}, InstanceState.RUNNING),
        ({"actual_status": "running", "intended_status": "stopped"}, InstanceState.STOPPING),
        ({"actual_status": "stopped", "intended_status": "stopped"}, InstanceState.STOPPED),
        ({"actual_status": "exited", "intended_status": "stopped"}, InstanceState.STOPPED),
        ({"actual_status": None, "intended_status": "running"}, InstanceState.STARTING),
        ({"actual_status": "loading", "intended_status": "running"}, InstanceState.STARTING),
        ({"actual_status": "scheduling", "intended_status": "running"}, InstanceState.STARTING),
        ({"actual_status": "stopped", "intended_status": "running"}, InstanceState.STARTING),
        ({"actual_status": "exited", "intended_status": "running"}, InstanceState.STARTING),
        ({"actual_status": "stopped", "intended_status": "stopped", "cur_state": "unloaded"}, InstanceState.GONE),
    ],
)
def test_vast_statuses_map_to_instance_states(row: dict[str, Any] | None, state: InstanceState) -> None:
    assert instance_state(row) is state


def test_agent_url_comes_from_public_ip_and_the_mapped_port() -> None:
    row = {"public_ipaddr": " 203.0.113.7\n", "ports": {"8000/tcp": [{"HostIp": "0.0.0.0", "HostPort": "41234"}]}}
    assert agent_url_of(row, 8000) == "http://203.0.113.7:41234"
    assert agent_url_of(row, 9000) is None
    assert agent_url_of({"public_ipaddr": "2001:db8::1", "ports": row["ports"]}, 8000) == "http://[2001:db8::1]:41234"


# --------------------------------------------------------------------------------------------
# Lifecycle
# --------------------------------------------------------------------------------------------


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


def test_concurrent_starts_of_a_fresh_box_rent_exactly_once(
    fake: FakeVastServer, control: FakeVastControl, tmp_path: Path
) -> None:
    a, b = provider(fake, tmp_path), provider(fake, tmp_path)

    async def both() -> list[Any]:
        return list(await asyncio.gather(a.start("vast-1"), b.start("vast-1"), a.start("vast-1")))

    results = run(both())
    assert all(r.state is InstanceState.STARTING for r in results)
    wait_state(a, InstanceState.RUNNING)
    assert control.calls()["create"] == 1 and len(control.instances()) == 1
    assert a.current_vast_id() == b.current_vast_id() == control.instances()[0]["id"]


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


# --------------------------------------------------------------------------------------------
# Retries, limits and errors
# --------------------------------------------------------------------------------------------


def test_a_429_storm_ends_in_success_within_the_retry_policy(
    fake: FakeVastServer, control: FakeVastControl, tmp_path: Path
) -> None:
    p = provider(fake, tmp_path)
    run(p.start("vast-1"))
    control.reset_calls()
    control.set(rate_limit_burst=4, rate_limit_endpoints=["show"])  # 429s, half of them plain text
    assert run(p.get("vast-1")) is not None
    assert control.calls()["show"] == 5 and control.statuses()["show"] == {"429": 4, "200": 1}

    control.reset_calls()
    control.set(rate_limit_burst=50, rate_limit_endpoints=["show"])
    with pytest.raises(VastRateLimited) as caught:
        run(p.get("vast-1"))
    assert caught.value.code == "provider_rate_limited" and control.calls()["show"] == FAST.max_attempts
    control.set(rate_limit_burst=0)

    control.reset_calls()
    control.set(error_burst=2, error_status=502, error_endpoints=["show"])
    assert run(p.get("vast-1")) is not None and control.calls()["show"] == 3


def test_minimum_intervals_keep_us_under_vast_rate_limits(
    fake: FakeVastServer, control: FakeVastControl, tmp_path: Path
) -> None:
    paced = RetryPolicy(max_attempts=5, base_delay_s=0.01, max_delay_s=0.05, min_interval_s={"show": 0.25})
    p = provider(fake, tmp_path, retry=paced)
    run(p.start("vast-1"))
    control.set(rate_limits_s={"show": 0.2})
    try:
        control.reset_calls()
        started = time.monotonic()

        async def five() -> None:
            async with p.client.bound():
                for _ in range(5):
                    await p.client.show_instance(p.current_vast_id() or 0)

        run(five())
        assert time.monotonic() - started >= 4 * 0.25 - 0.05
        assert control.statuses()["show"] == {"200": 5}
    finally:
        control.set(rate_limits_s={})


@pytest.mark.parametrize("status", [401, 403, 404])
def test_a_bad_key_is_an_auth_error_not_a_gone_box(
    fake: FakeVastServer, control: FakeVastControl, tmp_path: Path, status: int
) -> None:
    good = provider(fake, tmp_path)
    run(good.start("vast-1"))
    vast_id = good.current_vast_id()
    bad = provider(fake, tmp_path, key="not-the-key")
    control.set(bad_key_status=status)
    try:
        for call in (bad.get("vast-1"), bad.start("vast-1"), bad.list()):
            with pytest.raises(VastAuthError) as caught:
                run(call)
            assert caught.value.code == "provider_auth_error" and isinstance(caught.value, ProviderError)
            assert "not-the-key" not in caught.value.message
    finally:
        control.set(bad_key_status=401)
    assert bad.current_vast_id() == vast_id and control.calls().get("create", 0) == 1  # nothing forgotten or rented

    control.set(auth_error_status=status)  # the right key, revoked
    with pytest.raises(VastAuthError):
        run(good.get("vast-1"))


def test_no_matching_offer_is_no_capacity(fake: FakeVastServer, control: FakeVastControl, tmp_path: Path) -> None:
    p = provider(fake, tmp_path, max_bid_per_hour=0.01)
    with pytest.raises(NoCapacity) as caught:
        run(p.start("vast-1"))
    assert caught.value.code == "no_capacity" and control.calls().get("create", 0) == 0
    offers = run(provider(fake, tmp_path, preferred_gpus="H100_SXM", min_vram_gb=80).search_offers())
    assert [o.id for o in offers] == [5100005, 5100006] and offers[0].gpu_ram_gb > 80


def test_a_box_destroyed_behind_our_back_is_gone_and_the_next_start_rents_anew(
    fake: FakeVastServer, control: FakeVastControl, tmp_path: Path
) -> None:
    p = provider(fake, tmp_path)
    run(p.start("vast-1"))
    first = p.current_vast_id()
    httpx.delete(f"{fake.url}/api/v0/instances/{first}/", headers={"Authorization": f"Bearer {KEY}"})
    assert run_get(p).state is InstanceState.GONE and p.current_vast_id() is None
    assert run(p.start("vast-1")).state is InstanceState.STARTING
    assert p.current_vast_id() not in (None, first) and control.calls()["create"] == 2


def test_an_unreachable_api_is_a_provider_error_after_the_retries(tmp_path: Path) -> None:
    settings = VastSettings(api_key=SecretStr(KEY), url="http://127.0.0.1:1", instance_id="7000001")
    p = build_vast_provider(settings, state_dir=tmp_path, retry=FAST)
    with pytest.raises(ProviderError) as caught:
        run(p.get("vast-1"))
    assert caught.value.code == "provider_unavailable" and p.client.calls["show"] == FAST.max_attempts


def test_settings_come_from_the_documented_environment_names(monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in {
        "VASTAI_API_KEY": "k-env",
        "VAST_URL": "http://vast.test",
        "VASTAI_INSTANCE_ID": "C.42",
        "VASTAI_PREFERRED_GPUS": "RTX_4090, H100 SXM",
        "VASTAI_MIN_VRAM_GB": "24",
        "VASTAI_MAX_BID_PER_HOUR": "1.5",
        "VASTAI_DEFAULT_DISK_GB": "60",
        "VASTAI_DEFAULT_IMAGE": "me/agent:1",
        "VASTAI_TEMPLATE_IDS": "abc,def",
        "VASTAI_AGENT_PORT": "8001",
        "VASTAI_RESTART_DEADLINE_S": "90",
        "VASTAI_STOP_MODE": "destroy",
        "VASTAI_DESTROY_STOPPED_AFTER_S": "600",
        "VASTAI_LABEL": "gpuq-prod",
        "VASTAI_MIN_RELIABILITY": "0.9",
    }.items():
        monkeypatch.setenv(name, value)
    s = VastSettings()
    assert (s.api_key.get_secret_value(), s.url, s.instance_id) == ("k-env", "http://vast.test", "C.42")
    assert s.gpu_list() == ["RTX_4090", "H100 SXM"] and s.template_list() == ["abc", "def"]
    assert (s.min_vram_gb, s.max_bid_per_hour, s.default_disk_gb, s.default_image) == (24, 1.5, 60, "me/agent:1")
    assert (s.agent_port, s.restart_deadline_s, s.stop_mode, s.destroy_stopped_after_s) == (8001, 90, "destroy", 600)
    assert (s.label, s.min_reliability) == ("gpuq-prod", 0.9) and "k-env" not in repr(s)
    body = s.offer_query().bundles_body()
    assert body["gpu_name"] == {"in": ["RTX 4090", "H100 SXM"]} and body["gpu_ram"] == {"gte": 24000}
    assert body["dph_total"] == {"lte": 1.5} and body["reliability"] == {"gte": 0.9}
