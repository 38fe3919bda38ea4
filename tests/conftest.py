from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from shared.tools.client import JobsClient
from shared.tools.devstack import DevStack
from shared.tools.receiver import CallbackReceiver
from tests.contract.emulator import FirestoreEmulator, emulator_missing_reason
from tests.pubsub_emulator import PubSubEmulator, require_pubsub_emulator
from tests.servers import start_stack
from tests.stack_reset import StackReset


@pytest.fixture(autouse=True)
def clean_environ(monkeypatch: pytest.MonkeyPatch) -> None:
    """Each test starts without GPUQ_* / VAST* variables from the developer's shell."""
    for name in list(os.environ):
        if name.startswith(("GPUQ_", "VAST", "OLLAMA_")):
            monkeypatch.delenv(name)


@pytest.fixture(scope="session")
def firestore_emulator(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FirestoreEmulator]:
    reason = emulator_missing_reason()
    if reason is not None:
        pytest.skip(f"Firestore backend not tested: {reason}")
    emulator = FirestoreEmulator(tmp_path_factory.mktemp("firestore") / "emulator.log").start()
    yield emulator
    emulator.stop()  # raises if any process of its group (gcloud, wrapper, java) survives SIGKILL


@pytest.fixture(scope="session")
def pubsub_emulator(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PubSubEmulator]:
    """The real Pub/Sub emulator, started once per session (only when a test asks for it)."""
    require_pubsub_emulator()
    emulator = PubSubEmulator(tmp_path_factory.mktemp("pubsub") / "emulator.log").start()
    yield emulator
    emulator.stop()


@pytest.fixture(scope="session")
def session_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DevStack]:
    """The whole local stack, started once per test run. Tests take it as ``stack``, reset for each."""
    data_dir: Path = tmp_path_factory.mktemp("stack")
    running = start_stack(data_dir)
    try:
        yield running
    finally:
        running.stop()


@pytest.fixture(scope="session")
def stack_reset(session_stack: DevStack) -> Iterator[StackReset]:
    reset = StackReset(session_stack)
    yield reset
    reset.close()


@pytest.fixture
def stack(session_stack: DevStack, stack_reset: StackReset) -> DevStack:
    """The session's stack, as a test finds it: empty store and queues, no box up (processes kept)."""
    stack_reset()
    return session_stack


@pytest.fixture
def client(stack: DevStack) -> Iterator[JobsClient]:
    jobs = JobsClient(stack.url, stack.api_key)
    yield jobs
    jobs.close()


@pytest.fixture
def receiver(stack: DevStack) -> Iterator[CallbackReceiver]:
    rec = CallbackReceiver(stack.settings.webhook_secret).start()
    yield rec
    rec.stop()
