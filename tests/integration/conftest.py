from __future__ import annotations

from collections.abc import Iterator

import pytest

from shared.fakes.vast import FakeVastControl, FakeVastServer


@pytest.fixture
def control(fake: FakeVastServer, request: pytest.FixtureRequest) -> Iterator[FakeVastControl]:
    """The test hooks of the module's fake Vast (``fake`` fixture, account key ``KEY``), reset around each test."""
    ctl = FakeVastControl(fake.url, request.module.KEY)
    ctl.reset()
    yield ctl
    ctl.reset()
    ctl.close()
