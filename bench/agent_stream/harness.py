"""The harness: bursts of streams on one route, CPU read around them, each server checked alive after."""

from __future__ import annotations

import asyncio
import time
import uuid

from bench.agent_stream.constants import HOST
from bench.agent_stream.routes import Route
from bench.agent_stream.sample import Sample
from bench.ndjson_client import stream
from bench.procs import Proc

__all__ = ["Bench"]

SETTLE_S = 0.05  # after every burst, for every path: the proxy finishes its post-response work
STREAM_TIMEOUT_S = 60.0


class Bench:
    def __init__(self, routes: list[Route], deadline: float, procs: list[Proc]) -> None:
        self.routes = routes
        self.deadline = deadline
        self.procs = procs
        self.samples: dict[tuple[str, int, str], Sample] = {}
        self.truncated = False
        self._serial = 0

    def sample(self, phase: str, streams: int, route: Route) -> Sample:
        return self.samples.setdefault((phase, streams, route.name), Sample())

    def order(self, round_no: int) -> list[Route]:
        k = round_no % len(self.routes)
        return self.routes[k:] + self.routes[:k]

    def check_alive(self) -> None:
        """A server that died makes every later number meaningless: stop at once, and say which."""
        for proc in self.procs:
            code = proc.popen.poll()
            if code is not None:
                how = f"killed by signal {-code}" if code < 0 else f"exited with {code}"
                raise RuntimeError(
                    f"{proc.name} (pid {proc.pid}) {how} during the benchmark"
                    + (" - by something else on this machine?" if code < 0 else "")
                    + f"; log {proc.log_path}"
                )

    def out_of_time(self) -> bool:
        if time.monotonic() > self.deadline:
            self.truncated = True
        return self.truncated

    async def burst(self, route: Route, n: int, tokens: int, sample: Sample | None) -> None:
        """``n`` streams started together; CPU read around them (and the proxy's follow-up work)."""
        self._serial += 1
        run = uuid.uuid4().hex[:6]
        prompts = [f"bench {route.name} {self._serial}.{i} {run}" for i in range(n)]
        requests = route.prepare(prompts, tokens)
        cpu0, cp0 = route.cpu_s(), route.control_plane_cpu_s()
        t0 = time.perf_counter()
        results = await asyncio.gather(
            *(stream(HOST, route.port, r, timeout_s=STREAM_TIMEOUT_S, sse=route.sse) for r in requests)
        )
        wall = time.perf_counter() - t0
        await route.settle()
        await asyncio.sleep(SETTLE_S)
        self.check_alive()
        if sample is None:
            return
        sample.wall_s += wall
        sample.cpu_s += route.cpu_s() - cpu0
        sample.control_plane_cpu_s += route.control_plane_cpu_s() - cp0
        sample.add(results, prompts, tokens)
