"""The Vast.ai provider: :class:`~shared.boxes.providers.base.ComputeProvider` over Vast's REST API.

Lifecycle (``start`` = idempotent ensure-running, it never waits for the boot)
    running → nothing; stopped → ``PUT {"state": "running"}``; loading/scheduling → STARTING; no
    instance (never rented, destroyed) → rent one. A start that has not reached ``running`` within
    ``restart_deadline_s`` (the stopped box's GPU was rented by someone else meanwhile, so it stays
    "scheduling") is replaced: the best offer on another machine is rented, the stuck instance is
    destroyed. ``get`` of the logical id runs the same deadline check, so a dispatcher that only
    polls ``get`` while the box is STARTING still gets its replacement.

``stop`` (or destroy, in ``destroy`` mode) is confirmed with a GET; ``list`` shows our labelled
instances, the logical one under its logical id; ``reap_stopped`` destroys long-stopped ones.
"""

from __future__ import annotations

import asyncio
import builtins
import contextlib
import logging
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx

from shared.backoff import Backoff
from shared.boxes.providers.vast.box import snapshot
from shared.boxes.providers.vast.client import RetryPolicy, VastClient
from shared.boxes.providers.vast.rentals import VastRentals
from shared.boxes.providers.vast.rows import instance_state, vast_id
from shared.boxes.providers.vast.statefile import StoreStateDocument, note, trim
from shared.clock import Clock
from shared.errors import ProviderError, VastRejected
from shared.models import Instance, InstanceState
from shared.settings import VastSettings

if TYPE_CHECKING:
    from shared.store.base import JobStore

__all__ = ["STOP_CONFIRM_S", "VastProvider", "build_vast_provider"]

log = logging.getLogger("gpuq.provider.vast")

STOP_CONFIRM_S = 5.0
STOP_TRIES = 3  # a stop Vast refuses ({"success": false}) is sent this many times at most
_CONFIRM_POLL = Backoff(first_s=0.5, factor=1.0, deadline_s=STOP_CONFIRM_S)


def _fold_listed(s: dict[str, Any], rows: list[dict[str, Any]], now: float, logical_id: str) -> list[dict[str, Any]]:
    """Note every listed row in the records (the current one under the logical id)."""
    out = []
    for row in rows:
        vid = vast_id(row)
        current = logical_id if vid == s.get("vast_id") else None
        out.append(dict(note(s["records"], vid, now, instance_state(row), row, current)))
    trim(s["records"])
    return out


class VastProvider(VastRentals):
    """:class:`~shared.boxes.providers.base.ComputeProvider` for Vast.ai (see the package docstring)."""

    async def get(self, instance_id: str) -> Instance | None:
        """The box's state. For the logical box a start stuck past its deadline is replaced here."""
        async with self.client.bound():
            vid, logical = self._resolve(instance_id)
            if logical:
                return await self._get_logical()
            if vid is None:
                return None
            row = await self._show(vid)
            record = await self._mutate(
                lambda s: dict(note(s["records"], vid, self._clock.now(), instance_state(row), row))
            )
            return self._to_instance(row, instance_id, vid, record) if row is not None else None

    async def start(self, instance_id: str) -> Instance:
        """Ensure the box runs; returns at once (STARTING while it boots)."""
        async with self.client.bound():
            vid, logical = self._resolve(instance_id)
            if not logical:
                if vid is None:
                    raise VastRejected("no such instance", status_code=404)
                return await self._start_raw(vid, instance_id)
            instance, row, state = await self._observe_current()
            if instance.state in (InstanceState.RUNNING, InstanceState.STOPPING):
                return instance
            if instance.state is InstanceState.STARTING:
                if self._deadline_passed(row, state):
                    return await self._replace(row, state)
                return instance
            if instance.state is InstanceState.GONE:
                return await self._provision(replaces=None, exclude_machine=None)
            assert state.get("vast_id") is not None
            return await self._start_existing(int(state["vast_id"]), row)

    async def ensure_running(self) -> Instance:
        """:meth:`start` of the logical box."""
        return await self.start(self.logical_id)

    async def _start_existing(self, vid: int, row: Mapping[str, Any] | None) -> Instance:
        body = await self.client.set_state(vid, "running")
        self._forget(vid)
        if body is None:
            await self._mutate(lambda s: s.update(vast_id=None) if s.get("vast_id") == vid else None)
            return await self._provision(replaces=None, exclude_machine=None)
        if body.get("success") is False:
            raise ProviderError(
                f"Vast refused to start {vid}: {str(body.get('msg') or body)[:200]}", code="provider_start_failed"
            )
        now = self._clock.now()

        def fold(s: dict[str, Any]) -> dict[str, Any]:
            s.update(want="running", start_requested_at=now, waiting_since=now)
            return dict(note(s["records"], vid, now, InstanceState.STARTING, row, self.logical_id))

        record = await self._mutate(fold)
        log.info("start of %s (vast %s) requested", self.logical_id, vid)
        starting = {**(row or {}), "actual_status": (row or {}).get("actual_status"), "intended_status": "running"}
        return self._to_instance(starting, self.logical_id, vid, record, detail=f"vast {vid}: start requested")

    async def _start_raw(self, vid: int, public_id: str) -> Instance:
        body = await self.client.set_state(vid, "running")
        self._forget(vid)
        if body is None:
            return self._to_instance(None, public_id, vid)
        if body.get("success") is False:
            raise ProviderError(
                f"Vast refused to start {vid}: {str(body.get('msg') or body)[:200]}", code="provider_start_failed"
            )
        row = await self._show(vid, fresh=True)
        return self._to_instance(row, public_id, vid)

    async def stop(self, instance_id: str) -> Instance:
        """Stop (or, in ``destroy`` mode, destroy) the box and confirm it with a GET."""
        if self.settings.stop_mode == "destroy":
            return await self.destroy(instance_id)
        async with self.client.bound():
            vid, logical = self._resolve(instance_id)
            if vid is None:
                return self._to_instance(None, instance_id, None)
            await self._send_stop(vid)
            row, observed = await self._confirm_stop(vid)
            now = self._clock.now()

            def fold(s: dict[str, Any]) -> dict[str, Any]:
                if s.get("vast_id") == vid:
                    s.update(want="stopped", start_requested_at=None, waiting_since=None)
                return dict(note(s["records"], vid, now, observed, row, self.logical_id if logical else None))

            record = await self._mutate(fold)
            instance = self._to_instance(row, instance_id, vid, record)
            if observed in (InstanceState.RUNNING, InstanceState.STARTING):
                raise ProviderError(f"stop of {vid} not confirmed: {instance.detail}", code="provider_stop_failed")
            log.info("stop of %s (vast %s) confirmed: %s", instance_id, vid, observed.value)
            return instance

    async def _send_stop(self, vid: int) -> None:
        """``PUT {"state": "stopped"}``, sent again (with the client's backoff) while Vast refuses it."""
        delays = self.client.retry_delays(max_tries=STOP_TRIES)
        while True:
            body = await self.client.set_state(vid, "stopped")
            self._forget(vid)
            if body is None or body.get("success") is not False:
                return
            attempt = delays.tries
            log.warning(
                "Vast refused to stop %s (attempt %d/%d): %s", vid, attempt, STOP_TRIES, str(body.get("msg"))[:200]
            )
            delay = next(delays, None)
            if delay is None:
                raise ProviderError(
                    f"Vast refused to stop {vid}: {str(body.get('msg') or body)[:200]}", code="provider_stop_failed"
                )
            await asyncio.sleep(delay)

    async def _confirm_stop(self, vid: int) -> tuple[dict[str, Any] | None, InstanceState]:
        """GET until Vast shows the stop (``intended_status: stopped``), for up to ``STOP_CONFIRM_S``."""
        polls = _CONFIRM_POLL.delays()
        while True:
            row = await self._show(vid, fresh=True)
            observed = instance_state(row)
            if observed not in (InstanceState.RUNNING, InstanceState.STARTING):
                return row, observed
            delay = next(polls, None)
            if delay is None:
                return row, observed
            await asyncio.sleep(delay)

    async def destroy(self, instance_id: str) -> Instance:
        """Destroy the instance (all billing ends); confirmed with a GET."""
        async with self.client.bound():
            vid, _logical = self._resolve(instance_id)
            if vid is None:
                return self._to_instance(None, instance_id, None)
            await self._destroy(vid)
            return self._to_instance(None, instance_id, vid, detail=f"vast {vid}: destroyed")

    async def list(self) -> builtins.list[Instance]:
        """Our instances (label ``VASTAI_LABEL``) plus the logical box; the logical one under its logical id."""
        async with self.client.bound():
            state = await self._mutate(snapshot)
            if state.get("intent"):  # adopt a rental whose answer was lost before anyone calls it unknown
                await self._reconcile_intent(state)
            rows = await self.client.list_instances({"label": {"in": [self.settings.label]}})
            current = self.current_vast_id()
            if current is not None and all(vast_id(r) != current for r in rows):
                row = await self._show(current)
                if row is not None:
                    rows.append(row)
            now = self._clock.now()
            records = await self._mutate(lambda s: _fold_listed(s, rows, now, self.logical_id))
            return [
                self._to_instance(
                    row, self.logical_id if vast_id(row) == current else str(vast_id(row)), vast_id(row), record
                )
                for row, record in zip(rows, records, strict=True)
            ]

    async def reap_stopped(self, older_than_s: float | None = None) -> builtins.list[str]:
        """Destroy our instances stopped for longer than ``older_than_s`` (default
        ``VASTAI_DESTROY_STOPPED_AFTER_S``) and any replaced box still waiting to be destroyed."""
        limit = self.settings.destroy_stopped_after_s if older_than_s is None else older_than_s
        destroyed: builtins.list[str] = []
        async with self.client.bound():
            for vid in await self._mutate(lambda s: list(s["to_destroy"])):
                with contextlib.suppress(ProviderError):
                    await self._destroy(int(vid))
                    destroyed.append(str(vid))
            instances = await self.list()
            records = {r.id: r for r in await self.records()}
            now = self._clock.now()
            current = self.current_vast_id()
            for instance in instances:
                vid = current if instance.id == self.logical_id else int(instance.id)
                if vid is None or instance.state is not InstanceState.STOPPED:
                    continue
                stopped_at = records[vid].stopped_at if vid in records else None
                if stopped_at is not None and now - stopped_at >= limit:
                    log.info("vast instance %s stopped for %.0fs: destroying it", vid, now - stopped_at)
                    await self._destroy(vid)
                    destroyed.append(str(vid))
        return destroyed

    async def aclose(self) -> None:
        """Nothing to close unless an ``httpx.AsyncClient`` was passed in (its owner closes it)."""

    async def __aenter__(self) -> VastProvider:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()


def build_vast_provider(
    settings: VastSettings | None = None,
    *,
    logical_id: str = "vast-1",
    state_dir: Path | None = None,
    agent_env: Mapping[str, str] | None = None,
    retry: RetryPolicy | None = None,
    http: httpx.AsyncClient | None = None,
    clock: Clock | None = None,
    observe_ttl_s: float = 1.0,
    store: JobStore | None = None,
) -> VastProvider:
    """The provider the control plane and ``gpuq offers/instances`` use.

    ``agent_env`` is what a rented box's agent needs (``GPUQ_AGENT_SECRET``, ``GPUQ_AGENT_READY_URL``,
    …); it goes into the create request's env, never into a log. With a ``store`` (the control
    plane's), the box's state document is a store record shared by every functions instance; without
    one, a file in ``state_dir`` shared by this host's processes.
    """
    settings = settings or VastSettings()
    directory = state_dir or settings.state_dir or Path(".gpuq") / "vast"
    policy = retry or RetryPolicy(max_attempts=settings.max_attempts, timeout_s=settings.request_timeout_s)
    client = VastClient(settings.api_key.get_secret_value(), settings.url, retry=policy, http=http)
    return VastProvider(
        settings,
        logical_id=logical_id,
        state_dir=directory,
        client=client,
        agent_env=agent_env,
        clock=clock,
        observe_ttl_s=observe_ttl_s,
        state=StoreStateDocument(store, logical_id) if store is not None else None,
    )
