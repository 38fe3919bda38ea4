"""The Vast provider's retries, rate limits and errors against the fake Vast cloud over real sockets."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from pydantic import SecretStr

from shared.boxes.providers.vast import RetryPolicy, build_vast_provider
from shared.errors import NoCapacity, ProviderError, VastAuthError, VastRateLimited
from shared.fakes.ollama import FakeOllamaConfig
from shared.fakes.ollama import serve_in_thread as serve_ollama
from shared.fakes.vast import FakeVastControl, FakeVastServer, serve_in_thread
from shared.models import InstanceState
from shared.settings import VastSettings
from tests.integration.vast_provider_setup import FAST, KEY, fake_cloud_config, provider, run, run_get


@pytest.fixture(scope="module")
def ollama() -> Iterator[str]:
    with serve_ollama(FakeOllamaConfig(token_delay_s=0.001, load_delay_s=0.05)) as server:
        yield server.url


@pytest.fixture(scope="module")
def fake(tmp_path_factory: pytest.TempPathFactory, ollama: str) -> Iterator[FakeVastServer]:
    with serve_in_thread(fake_cloud_config(tmp_path_factory.mktemp("fake-vast"), ollama)) as server:
        yield server


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
