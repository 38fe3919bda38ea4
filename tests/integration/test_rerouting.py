"""A job handed to a box that is stopping meanwhile is refused there and re-routed to another box of its
pool, never lost: the real dispatcher, two stand-in agents over sockets, the registry on SQLite."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from shared.boxes.pools import PoolConfig, Pools
from shared.boxes.registry import box_views, claim_starts, mark_ready
from shared.boxes.scaling import decide_target
from shared.clock import FakeClock
from shared.controlplane import ControlPlane
from shared.fakes.serving import serve_app_in_thread
from shared.jobs.dispatcher import dispatch_job
from shared.jobs.intake import parse_job_create, submit_job
from shared.models import Instance, InstanceState
from shared.security.signing import NonceCache
from shared.settings import ControlPlaneSettings
from shared.store import SqliteJobStore

POOL = PoolConfig(name="gpu", models=["llama3.2:1b"], max_boxes=2, jobs_per_box=2)


def _agent(stopping: bool) -> web.Application:
    async def jobs(request: web.Request) -> web.Response:
        body = json.loads(await request.read())
        if stopping:
            error = {"code": "instance_stopping", "message": "this box is stopping"}
            return web.json_response({"error": error}, status=503)
        return web.json_response({"job_id": body["job_id"], "attempt": body["attempt"]}, status=202)

    app = web.Application()
    app.router.add_post("/v1/jobs", jobs)
    return app


class TwoBoxes:
    """gpu-1 stops while a job is handed to it (its provider then says so); gpu-2 stays up."""

    name = "local"

    def __init__(self, urls: dict[str, str]) -> None:
        self.urls = urls
        self.stopping: set[str] = set()

    async def get(self, instance_id: str) -> Instance | None:
        state = InstanceState.STOPPING if instance_id in self.stopping else InstanceState.RUNNING
        return Instance(id=instance_id, provider="local", state=state, agent_url=self.urls[instance_id])

    async def start(self, instance_id: str) -> Instance:
        return await self.get(instance_id)  # type: ignore[return-value]

    async def stop(self, instance_id: str) -> Instance:
        return await self.get(instance_id)  # type: ignore[return-value]

    async def list(self) -> list[Instance]:
        return [i for b in self.urls if (i := await self.get(b)) is not None]


class NoQueue:
    def push(self, queue: str, payload: dict[str, Any], *, delay_s: float = 0.0) -> str:
        return "task"


@pytest.fixture
def plane(tmp_path: Path) -> Iterator[tuple[ControlPlane, TwoBoxes]]:
    with serve_app_in_thread(_agent(stopping=True)) as one, serve_app_in_thread(_agent(stopping=False)) as two:
        boxes = TwoBoxes({"gpu-1": one, "gpu-2": two})
        settings = ControlPlaneSettings(data_dir=tmp_path, job_token_secret="s" * 32, agent_master_secret="m" * 32)
        cp = ControlPlane(
            settings=settings,
            store=SqliteJobStore(tmp_path / "gpuq.db"),
            queue=NoQueue(),  # type: ignore[arg-type]
            provider=boxes,
            nonces=NonceCache(),
            pools=Pools((POOL,)),
            clock=FakeClock(1000.0),
        )
        claim_starts(cp, POOL, decide_target(queued_work_s=99, active=0, slots_per_box=1, cold_start_s=1, max_boxes=2))
        for box in ("gpu-1", "gpu-2"):
            mark_ready(cp, box, "gpu")
        yield cp, boxes
        cp.http.close()
        cp.store.close()


def test_a_job_refused_by_a_stopping_box_is_rerouted_to_the_other(plane: tuple[ControlPlane, TwoBoxes]) -> None:
    cp, boxes = plane
    job, _ = submit_job(cp, "owner", parse_job_create({"model": "llama3.2:1b", "prompt": "route me"}))
    assert dispatch_job(cp, job.id, 0) == "snoozed:instance_stopping"  # gpu-1 first: fewest ids, equal load
    assert all(not v.running for v in box_views(cp, POOL))  # its slot given back
    boxes.stopping.add("gpu-1")  # what its provider now says
    assert dispatch_job(cp, job.id, 1) == "handed_over"
    handed = cp.store.get(job.id)
    assert handed is not None and handed.instance_id == "gpu-2" and handed.status.value == "running"
    assert [sorted(v.running) for v in box_views(cp, POOL)] == [[], [job.id]]
