"""The same dispatch task delivered to several functions instances at once (Cloud Tasks delivers at least
once; a retry can overlap a slow first try): one hands the job over, the others stand back, and an attempt
number is never used twice. On both stores, each instance with its own store connection."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from aiohttp import web

from bench.store_calls import POOL, FixedBoxes
from shared.boxes.pools import Pools
from shared.clock import FakeClock
from shared.controlplane import ControlPlane
from shared.fakes.serving import serve_app_in_thread
from shared.jobs.dispatcher import dispatch_job
from shared.jobs.intake import parse_job_create, submit_job
from shared.security.signing import NonceCache
from shared.settings import ControlPlaneSettings
from tests.contract.conftest import Backend


class RecordingQueue:
    def __init__(self) -> None:
        self.pushed: list[tuple[dict[str, Any], float]] = []
        self._lock = threading.Lock()

    def push(self, queue: str, payload: dict[str, Any], *, delay_s: float = 0.0) -> str:
        with self._lock:
            self.pushed.append((payload, delay_s))
        return "task"


@pytest.fixture
def agent() -> Iterator[tuple[str, list[tuple[str, int]]]]:
    """A stand-in agent that takes its time to accept (the window in which deliveries overlap)."""
    handed: list[tuple[str, int]] = []

    async def accept(request: web.Request) -> web.Response:
        import asyncio

        body = json.loads(await request.read())
        handed.append((body["job_id"], body["attempt"]))
        await asyncio.sleep(0.3)
        return web.json_response({"job_id": body["job_id"], "attempt": body["attempt"]}, status=202)

    app = web.Application()
    app.router.add_post("/v1/jobs", accept)
    with serve_app_in_thread(app) as url:
        yield url, handed


def _plane(backend: Backend, agent_url: str, queue: RecordingQueue, clock: FakeClock) -> ControlPlane:
    return ControlPlane(
        settings=ControlPlaneSettings(job_token_secret="s" * 32, agent_master_secret="m" * 32, lease_s=30.0),
        store=backend.open(),
        queue=queue,  # type: ignore[arg-type]
        provider=FixedBoxes(agent_url),
        nonces=NonceCache(),
        pools=Pools((POOL,)),
        clock=clock,
    )


def _booted(cp: ControlPlane, job_id: str) -> int:
    """The pool's first dispatch starts a box and snoozes; the seq of the delivery that follows."""
    assert dispatch_job(cp, job_id, 0).startswith("snoozed:")
    stored = cp.store.get(job_id)
    assert stored is not None
    return stored.dispatch_seq


def test_one_of_three_overlapping_deliveries_hands_the_job_over(
    backend: Backend, agent: tuple[str, list[tuple[str, int]]]
) -> None:
    url, handed = agent
    queue, clock = RecordingQueue(), FakeClock(1000.0)
    planes = [_plane(backend, url, queue, clock) for _ in range(3)]
    job, _ = submit_job(planes[0], "owner", parse_job_create({"model": "llama3.2:1b", "prompt": "once"}))
    seq = _booted(planes[0], job.id)
    queue.pushed.clear()
    try:
        with ThreadPoolExecutor(3) as pool:
            outcomes = sorted(pool.map(lambda cp: dispatch_job(cp, job.id, seq), planes))
        assert outcomes.count("handed_over") == 1 and handed == [(job.id, 1)]
        stored = planes[0].store.get(job.id)
        assert stored is not None and stored.status.value == "running" and stored.attempt == 1
        # Those that stood back asked to look again once the holder's reservation would have expired.
        rechecks = [delay for payload, delay in queue.pushed if payload.get("kind") == "job"]
        assert all(29.0 < delay <= 31.0 for delay in rechecks) and len(rechecks) == outcomes.count("raced")
    finally:
        for cp in planes:
            cp.http.close()
            cp.store.close()


def test_a_reservation_whose_holder_died_is_taken_over_with_a_new_attempt(
    backend: Backend, agent: tuple[str, list[tuple[str, int]]]
) -> None:
    url, handed = agent
    queue, clock = RecordingQueue(), FakeClock(1000.0)
    cp = _plane(backend, url, queue, clock)
    job, _ = submit_job(cp, "owner", parse_job_create({"model": "llama3.2:1b", "prompt": "holder died"}))

    def held(current: Any) -> Any:  # what a delivery killed between reserving and handing over leaves
        current.status, current.status_reason, current.attempt = current.status.STARTING, "handing_over", 1
        current.lease_expires_at = 1030.0
        return current

    seq = _booted(cp, job.id)
    cp.store.modify(job.id, held)
    try:
        assert dispatch_job(cp, job.id, seq) == "raced" and handed == []  # its lease still runs
        clock.advance(31.0)
        assert dispatch_job(cp, job.id, seq) == "handed_over"
        assert handed == [(job.id, 2)]  # attempt 1 may have reached an agent: never reused
    finally:
        cp.http.close()
        cp.store.close()
