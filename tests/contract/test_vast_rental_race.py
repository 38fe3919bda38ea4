"""Two functions instances racing to rent the same Vast box, on every store backend (see ``conftest.py``).

Each instance has its own ``/tmp`` (state dir) and its own store connection; only the store is shared,
as in production. The fake Vast cloud counts creates: one need gets exactly one rental.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from shared.fakes.ollama import FakeOllamaConfig
from shared.fakes.ollama import serve_in_thread as serve_ollama
from shared.fakes.vast import FakeVastControl, FakeVastServer, serve_in_thread
from shared.models import InstanceState
from tests.contract.conftest import Backend
from tests.integration.vast_provider_setup import KEY, fake_cloud_config, provider, run, wait_state


@pytest.fixture(scope="module")
def fake(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FakeVastServer]:
    work = tmp_path_factory.mktemp("fake-vast")
    with (
        serve_ollama(FakeOllamaConfig(token_delay_s=0.001, load_delay_s=0.05)) as ollama,
        serve_in_thread(fake_cloud_config(work, ollama.url)) as server,
    ):
        yield server


@pytest.fixture
def control(fake: FakeVastServer) -> Iterator[FakeVastControl]:
    ctl = FakeVastControl(fake.url, KEY)
    ctl.reset()
    yield ctl
    ctl.reset()
    ctl.close()


def test_three_racing_starts_from_two_instances_rent_one_box(
    backend: Backend, fake: FakeVastServer, control: FakeVastControl, tmp_path: Path
) -> None:
    stores = [backend.open(), backend.open()]
    a = provider(fake, tmp_path / "instance-a", store=stores[0])
    b = provider(fake, tmp_path / "instance-b", store=stores[1])

    async def race() -> list[Any]:
        return list(await asyncio.gather(a.start("vast-1"), b.start("vast-1"), a.start("vast-1")))

    try:
        results = run(race())
        assert all(r.state is InstanceState.STARTING for r in results)
        wait_state(a, InstanceState.RUNNING)
        rentals = control.calls()["create"]
        print(f"\n{backend.name}: 3 racing starts from 2 instances → {rentals} rental(s)")
        assert rentals == 1 and len(control.instances()) == 1
        assert a.current_vast_id() == b.current_vast_id() == control.instances()[0]["id"]
        assert not (tmp_path / "instance-a" / "vast").exists()  # nothing of the rental kept on either host
        run(a.stop("vast-1"))
        wait_state(b, InstanceState.STOPPED)
    finally:
        for store in stores:
            store.close()
