"""``GET /metrics`` of the control plane, in Prometheus' text format (``prometheus_client``).

Every value is read from the store when scraped, so every functions instance answers the same:

- ``gpuq_jobs_total{pool,model,status}``: jobs that ended (succeeded, failed, cancelled, expired);
- ``gpuq_queue_depth{pool}`` and ``gpuq_jobs_running{pool}``: jobs waiting, and generating;
- ``gpuq_instances{pool,state}``: the box registry (stopped, starting, ready, draining);
- ``gpuq_cost_usd_total{pool}``: what every box session cost, the open ones so far;
- ``gpuq_instance_idle_seconds_total{pool}``: seconds boxes were up (ready) with no job running, over
  every session kept, the open ones so far (``shared.boxes.idletime``);
- ``gpuq_budget_remaining_usd{period}``: the daily and monthly caps minus this period's spend;
- ``gpuq_callback_deliveries_total{outcome}``: callback tries (delivered, retrying, failed);
- ``gpuq_queue_wait_seconds`` (queued → handed to a box), ``gpuq_time_to_first_token_seconds`` (queued
  → first output) over the last ``RECENT_JOBS`` finished jobs, and ``gpuq_cold_start_seconds{pool,phase}``
  (start requested → ready) over the box sessions: histograms.

The job figures come from listing the store (up to ``RECENT_JOBS`` per status): exact for a deployment of
that size, a recent window beyond it.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Iterable, Iterator

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector

from shared.boxes.idletime import idle_seconds
from shared.boxes.instances import session_records
from shared.boxes.registry import box_views
from shared.controlplane import ControlPlane
from shared.errors import GpuqError
from shared.models import Job
from shared.money.budget import spend_usd
from shared.states import JobStatus

__all__ = ["CONTENT_TYPE", "RECENT_JOBS", "render"]

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
RECENT_JOBS = 1000
WAIT_BUCKETS = (0.1, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0)
_TERMINAL = (JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.CANCELLED, JobStatus.EXPIRED)


def _histogram(name: str, doc: str, values: Iterable[float], labels: dict[str, str] | None = None) -> Metric:
    return _histograms(name, doc, list(labels or {}), {tuple((labels or {}).values()): list(values)})


def _histograms(name: str, doc: str, label_names: list[str], series: dict[tuple[str, ...], list[float]]) -> Metric:
    """One histogram family, one series per label values (a name appears once in the exposition)."""
    family = HistogramMetricFamily(name, doc, labels=label_names)
    for label_values, values in sorted(series.items()):
        data = sorted(values)
        buckets = [(str(b), float(sum(1 for v in data if v <= b))) for b in WAIT_BUCKETS]
        family.add_metric(list(label_values), [*buckets, ("+Inf", float(len(data)))], sum(data))
    return family


class _StoreCollector(Collector):
    def __init__(self, cp: ControlPlane) -> None:
        self._cp = cp

    def _pool_of(self, model: str) -> str:
        try:
            return self._cp.pools.route(model).name
        except GpuqError:
            return "none"

    def _jobs(self, ended: list[Job], waiting: list[Job], running: list[Job]) -> Iterator[Metric]:
        total = CounterMetricFamily(
            "gpuq_jobs", "Jobs that ended, by pool, model and status.", labels=["pool", "model", "status"]
        )
        for (pool, model, status), n in sorted(
            Counter((self._pool_of(j.model), j.model, j.status.value) for j in ended).items()
        ):
            total.add_metric([pool, model, status], n)
        yield total
        for name, doc, jobs in (
            ("gpuq_queue_depth", "Jobs waiting for a box, by pool.", waiting),
            ("gpuq_jobs_running", "Jobs generating, by pool.", running),
        ):
            family = GaugeMetricFamily(name, doc, labels=["pool"])
            counts = Counter(self._pool_of(j.model) for j in jobs)
            for pool in [p.name for p in self._cp.pools]:
                family.add_metric([pool], counts.get(pool, 0))
            yield family
        waits = [j.handed_at - j.queued_at for j in ended + running if j.handed_at]
        yield _histogram("gpuq_queue_wait_seconds", "Queued to handed to a box.", waits)
        firsts = [j.started_at - j.queued_at for j in ended + running if j.started_at]
        yield _histogram("gpuq_time_to_first_token_seconds", "Queued to the first output.", firsts)
        tries = CounterMetricFamily(
            "gpuq_callback_deliveries", "Callback delivery tries, by outcome.", labels=["outcome"]
        )
        outcomes = Counter(d.outcome for j in ended + running for d in j.callback.deliveries)
        for outcome in ("delivered", "retrying", "failed"):
            tries.add_metric([outcome], outcomes.get(outcome, 0))
        yield tries

    def _boxes(self) -> Iterator[Metric]:
        cp = self._cp
        instances = GaugeMetricFamily("gpuq_instances", "Boxes by pool and state.", labels=["pool", "state"])
        for pool in cp.pools:
            states = Counter(view.state for view in box_views(cp, pool))
            for state in ("stopped", "starting", "ready", "draining"):
                instances.add_metric([pool.name, state], states.get(state, 0))
        yield instances
        now = cp.clock.now()
        cost = CounterMetricFamily("gpuq_cost_usd", "What the boxes' sessions cost, by pool.", labels=["pool"])
        usd: dict[str, float] = {}
        idle: dict[str, float] = {pool.name: 0.0 for pool in cp.pools}
        cold: dict[tuple[str, ...], list[float]] = {}
        for session in session_records(cp, 0.0, now):
            owner = cp.pools.of_box(str(session.get("instance_id", "")))
            name = owner.name if owner else "none"
            usd[name] = usd.get(name, 0.0) + float(session.get("cost_usd", 0.0))
            idle[name] = idle.get(name, 0.0) + idle_seconds(session, float(session.get("stop_s") or now))
            if session.get("ready_s") is not None:
                cold.setdefault((name, "total"), []).append(float(session["ready_s"]) - float(session["start_s"]))
                for phase, seconds in (session.get("phases_s") or {}).items():
                    cold.setdefault((name, phase), []).append(float(seconds))
        for name, value in sorted(usd.items()):
            cost.add_metric([name], value)
        yield cost
        idle_family = CounterMetricFamily(
            "gpuq_instance_idle_seconds", "Seconds boxes were up with no job running, by pool.", labels=["pool"]
        )
        for name, value in sorted(idle.items()):
            idle_family.add_metric([name], value)
        yield idle_family
        if cold:
            doc = "Start requested to ready (phase total), and each phase."
            yield _histograms("gpuq_cold_start_seconds", doc, ["pool", "phase"], cold)

    def _budget(self) -> Iterator[Metric]:
        s = self._cp.settings
        if s.budget_daily_usd <= 0 and s.budget_monthly_usd <= 0:
            return
        day, month = spend_usd(self._cp, self._cp.clock.now())
        family = GaugeMetricFamily("gpuq_budget_remaining_usd", "Cap minus this period's spend.", labels=["period"])
        for period, cap, spent in (("daily", s.budget_daily_usd, day), ("monthly", s.budget_monthly_usd, month)):
            if cap > 0:
                family.add_metric([period], cap - spent)
        yield family

    def collect(self) -> Iterator[Metric]:
        started = time.monotonic()
        store = self._cp.store
        ended = store.list_by_status(_TERMINAL, limit=RECENT_JOBS)
        waiting = store.list_by_status([JobStatus.QUEUED, JobStatus.STARTING], limit=RECENT_JOBS)
        running = store.list_by_status([JobStatus.RUNNING], limit=RECENT_JOBS)
        yield from self._jobs(ended, waiting, running)
        yield from self._boxes()
        yield from self._budget()
        yield GaugeMetricFamily(
            "gpuq_scrape_seconds", "How long reading the store took.", value=time.monotonic() - started
        )


def render(cp: ControlPlane) -> bytes:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_StoreCollector(cp))
    return generate_latest(registry)
