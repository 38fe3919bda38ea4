"""What the Vast provider knows of its logical box: the state file, observations, adoption, destroys.

:class:`VastBox` is the base of :class:`~shared.boxes.providers.vast.provider.VastProvider`: it owns
the state file (which Vast instance backs the logical id, a pending rental's intent, the records),
the short-lived cache of ``show`` answers, and the steps every operation shares: observing the
current instance (reconciling a create whose answer was lost first), adopting a new rental, and
destroying an instance with confirmation. Renting is :mod:`~shared.boxes.providers.vast.rentals`;
the provider interface is :mod:`~shared.boxes.providers.vast.provider`.
"""

from __future__ import annotations

import asyncio
import json
import logging
import threading
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, TypeVar

from shared.boxes.providers.vast.client import RetryPolicy, VastClient
from shared.boxes.providers.vast.rows import agent_url_of, extra_env_of, instance_state, lower, vast_id
from shared.boxes.providers.vast.statefile import StateDocument, StateFile, VastInstanceRecord, note
from shared.clock import Clock, SystemClock
from shared.errors import ProviderError, VastRejected, VastUnavailable
from shared.models import Instance, InstanceState
from shared.settings import VastSettings

__all__ = ["INTENT_ENV", "LOGICAL_ENV", "SEARCHING_STALE_S", "VastBox", "snapshot"]

log = logging.getLogger("gpuq.provider.vast")

T = TypeVar("T")

INTENT_ENV = "GPUQ_VAST_INTENT"
LOGICAL_ENV = "GPUQ_VAST_LOGICAL_ID"
SEARCHING_STALE_S = 60.0


def snapshot(state: dict[str, Any]) -> dict[str, Any]:
    """A snapshot of the state file's document, safe to read outside the lock."""
    copied: dict[str, Any] = json.loads(json.dumps(state))
    return copied


class VastBox:
    """The logical box's state and the steps the provider's operations share (see the module docstring)."""

    name = "vast"

    def __init__(
        self,
        settings: VastSettings,
        *,
        logical_id: str,
        state_dir: Path,
        client: VastClient | None = None,
        agent_env: Mapping[str, str] | None = None,
        clock: Clock | None = None,
        observe_ttl_s: float = 1.0,
        state: StateDocument | None = None,
    ) -> None:
        self.settings = settings
        self.logical_id = logical_id
        self.client = client or VastClient(
            settings.api_key.get_secret_value(),
            settings.url,
            retry=RetryPolicy(max_attempts=settings.max_attempts, timeout_s=settings.request_timeout_s),
        )
        self._agent_env = dict(agent_env or {})
        self._clock = clock or SystemClock()
        self._state = state or StateFile(Path(state_dir) / f"vast-{logical_id}.json")
        self._observe_ttl_s = observe_ttl_s
        self._cache_lock = threading.Lock()
        self._cache: dict[int, tuple[float, dict[str, Any] | None]] = {}

    def __repr__(self) -> str:
        return f"{type(self).__name__}(logical_id={self.logical_id!r}, url={self.client.url!r})"

    # --- state document ---------------------------------------------------------------------------
    def _mutate_sync(self, fn: Callable[[dict[str, Any]], T]) -> T:
        def seeded(state: dict[str, Any]) -> T:
            self._seed(state)
            return fn(state)

        return self._state.apply(seeded)

    async def _mutate(self, fn: Callable[[dict[str, Any]], T]) -> T:
        return await asyncio.to_thread(self._mutate_sync, fn)

    def _seed(self, state: dict[str, Any]) -> None:
        # VASTAI_INSTANCE_ID, else a logical id that is itself a Vast id (GPUQ_INSTANCE_ID=12345678).
        configured = self.settings.instance_id.strip() or (self.logical_id if self.logical_id.isdigit() else "")
        state.setdefault("logical_id", self.logical_id)
        state.setdefault("records", {})
        state.setdefault("to_destroy", [])
        state.setdefault("replacements", [])
        state.setdefault("creates_sent", 0)
        if "vast_id" not in state or (configured and state.get("seeded_from") != configured):
            digits = configured.removeprefix("C.")  # Vast also writes instance ids as "C.1234567"
            state["vast_id"] = int(digits) if digits.isdigit() else None
            state["seeded_from"] = configured

    def current_vast_id(self) -> int | None:
        """The Vast instance behind the logical box right now (``None``: nothing rented)."""
        return self._mutate_sync(lambda s: s.get("vast_id"))

    def records_sync(self) -> list[VastInstanceRecord]:
        """Every instance this provider has seen: id, label, $/h, state and timestamps."""
        raw = self._mutate_sync(lambda s: list(s["records"].values()))
        return [VastInstanceRecord.model_validate({**r, "state": r.get("state") or "starting"}) for r in raw]

    async def records(self) -> list[VastInstanceRecord]:
        return await asyncio.to_thread(self.records_sync)

    def creates_sent(self) -> int:
        """How many create requests this deployment has sent (duplicate-rental checks)."""
        return int(self._mutate_sync(lambda s: s.get("creates_sent", 0)))

    async def _clear_intent(self, token: Any) -> None:
        """Forget the pending rental ``token`` (if it is still the pending one)."""
        await self._mutate(lambda s: s.update(intent=None) if (s.get("intent") or {}).get("token") == token else None)

    # --- observation ------------------------------------------------------------------------------
    async def _show(self, vid: int, *, fresh: bool = False) -> dict[str, Any] | None:
        now = time.monotonic()
        if not fresh:
            with self._cache_lock:
                hit = self._cache.get(vid)
            if hit is not None and now - hit[0] < self._observe_ttl_s:
                return hit[1]
        row = await self.client.show_instance(vid)
        with self._cache_lock:
            self._cache[vid] = (time.monotonic(), row)
        return row

    def _forget(self, vid: int | None) -> None:
        with self._cache_lock:
            if vid is None:
                self._cache.clear()
            else:
                self._cache.pop(vid, None)

    def _to_instance(
        self,
        row: Mapping[str, Any] | None,
        public_id: str,
        vid: int | None,
        record: Mapping[str, Any] | None = None,
        detail: str | None = None,
    ) -> Instance:
        state = instance_state(row)
        record = record or {}
        if detail is None and row is not None:
            detail = f"vast {vid}: actual={row.get('actual_status')} intended={row.get('intended_status')}" + (
                f" ({str(row.get('status_msg'))[:80]})" if row.get("status_msg") else ""
            )
        elif detail is None:
            detail = f"vast {vid}: gone" if vid is not None else "no Vast instance rented"
        return Instance(
            id=public_id,
            provider=self.name,
            state=state,
            agent_url=agent_url_of(row, self.settings.agent_port) if state is InstanceState.RUNNING else None,
            label=(row or {}).get("label") or record.get("label"),
            price_per_hour=float((row or {}).get("dph_total") or record.get("price_per_hour") or 0.0),
            started_at=record.get("running_since") or record.get("created_at"),
            stopped_at=record.get("stopped_at"),
            detail=detail,
        )

    def _starting(self, detail: str) -> Instance:
        """The logical box while a rental is under way (no Vast instance to show yet)."""
        return Instance(id=self.logical_id, provider=self.name, state=InstanceState.STARTING, detail=detail)

    async def _observe_current(self) -> tuple[Instance, dict[str, Any] | None, dict[str, Any]]:
        """(instance, Vast row, state snapshot) of the logical box; reconciles a pending create first."""
        state = await self._mutate(snapshot)
        if state.get("intent"):
            state = await self._reconcile_intent(state)
        vid = state.get("vast_id")
        if vid is None:
            if state.get("intent"):
                return self._starting("a rental is being created"), None, state
            return self._to_instance(None, self.logical_id, None), None, state
        row = await self._show(vid)
        if row is None and not await self._really_gone(vid):
            raise VastUnavailable(f"Vast says instance {vid} does not exist but still lists it")
        now = self._clock.now()
        observed = instance_state(row)

        def fold(s: dict[str, Any]) -> tuple[dict[str, Any], float | None]:
            rec = note(s["records"], vid, now, observed, row, self.logical_id)
            if s.get("vast_id") == vid:
                if observed is InstanceState.STARTING:
                    s["waiting_since"] = s.get("waiting_since") or now
                else:
                    s["waiting_since"] = None
                if observed is InstanceState.GONE:  # destroyed behind our back: the next start rents anew
                    log.warning("vast %s behind %s is gone", vid, self.logical_id)
                    s.update(vast_id=None, want=None, start_requested_at=None)
            return dict(rec), s.get("waiting_since")

        record, state["waiting_since"] = await self._mutate(fold)
        return self._to_instance(row, self.logical_id, vid, record), row, state

    async def _really_gone(self, vid: int) -> bool:
        """Before forgetting the box, ask the (authenticated) list too: a 404 is not proof enough."""
        rows = await self.client.list_instances({"id": {"eq": vid}})
        return all(vast_id(r) != vid for r in rows)

    def _deadline_passed(self, row: Mapping[str, Any] | None, state: Mapping[str, Any]) -> bool:
        since = state.get("waiting_since")
        if since is None:
            return False
        loading = lower((row or {}).get("actual_status")) == "loading"
        deadline = self.settings.load_deadline_s if loading else self.settings.restart_deadline_s
        return self._clock.now() - float(since) >= deadline

    def _resolve(self, instance_id: str) -> tuple[int | None, bool]:
        if instance_id == self.logical_id:
            return self.current_vast_id(), True
        raw = instance_id.removeprefix("vast:")
        if raw.isdigit():
            return int(raw), False
        raise VastRejected(
            f"unknown instance id {instance_id!r} (use {self.logical_id!r} or a Vast id)",
            status_code=404,
            code="provider_unknown_instance",
        )

    # --- destroying -------------------------------------------------------------------------------
    async def _destroy(self, vid: int) -> None:
        body = await self.client.destroy_instance(vid)
        self._forget(vid)
        if body is not None and body.get("success") is False:
            raise ProviderError(
                f"Vast refused to destroy {vid}: {str(body.get('msg') or body)[:200]}", code="provider_destroy_failed"
            )
        row = await self._show(vid, fresh=True)
        if row is not None and instance_state(row) is not InstanceState.GONE:
            raise ProviderError(f"destroy of {vid} not confirmed", code="provider_destroy_failed")
        now = self._clock.now()

        def fold(s: dict[str, Any]) -> None:
            note(s["records"], vid, now, InstanceState.GONE, None)
            s["to_destroy"] = [i for i in s["to_destroy"] if i != vid]
            if s.get("vast_id") == vid:
                s.update(vast_id=None, want=None, start_requested_at=None, waiting_since=None)

        await self._mutate(fold)
        log.info("vast instance %s destroyed", vid)

    async def _destroy_leftovers(self) -> None:
        for vid in await self._mutate(lambda s: list(s["to_destroy"])):
            try:
                await self._destroy(int(vid))
            except ProviderError as exc:
                log.warning("could not destroy replaced instance %s yet (%s); the reaper retries", vid, exc.message)

    # --- adopting a rental ------------------------------------------------------------------------
    async def _adopt(
        self, new_id: int, token: str, offer_id: int | None, price: float | None, gpu_name: str | None
    ) -> None:
        now = self._clock.now()

        def adopt(s: dict[str, Any]) -> None:
            intent = s.get("intent") or {}
            replaces = intent.get("replaces") if intent.get("token") == token else None
            if intent.get("token") == token:
                s["intent"] = None
            s.update(vast_id=new_id, want="running", start_requested_at=now, waiting_since=now)
            s["replacements"] = [
                *[t for t in s.get("replacements", []) if now - float(t) < 3600.0],
                *([now] if replaces is not None else []),
            ]
            rec = note(s["records"], new_id, now, InstanceState.STARTING, None, self.logical_id)
            rec.update(offer_id=offer_id, label=self.settings.label, gpu_name=gpu_name, rental_token=token)
            if price is not None:
                rec["price_per_hour"] = price
            if replaces is not None and replaces != new_id:
                s["to_destroy"] = sorted({*s["to_destroy"], int(replaces)})
                old = s["records"].get(str(replaces))
                if old is not None:
                    old["replaced_by"] = new_id

        await self._mutate(adopt)
        self._forget(None)
        log.info("%s is now vast instance %s", self.logical_id, new_id)

    async def _reconcile_intent(self, state: dict[str, Any]) -> dict[str, Any]:
        """A create may have been sent whose answer we never got: find it by its token, or expire it."""
        intent = state.get("intent") or {}
        now = self._clock.now()
        if intent.get("state") != "sending":
            if intent and now - float(intent.get("at", 0)) > SEARCHING_STALE_S:
                await self._clear_intent(intent.get("token"))
            return state
        rows = await self.client.list_instances({"label": {"in": [self.settings.label]}})
        found = [r for r in rows if extra_env_of(r).get(INTENT_ENV) == intent.get("token")]
        if found:
            row = found[0]
            await self._adopt(
                vast_id(row),
                str(intent["token"]),
                intent.get("offer_id"),
                float(row["dph_total"]) if row.get("dph_total") is not None else None,
                row.get("gpu_name"),
            )
            await self._destroy_leftovers()
        elif now - float(intent.get("at", 0)) > self.settings.restart_deadline_s:
            log.warning("create %s for %s never appeared: forgetting it", intent.get("token"), self.logical_id)
            await self._clear_intent(intent.get("token"))
        return await self._mutate(snapshot)
