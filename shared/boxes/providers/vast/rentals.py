"""Renting Vast boxes: the best offer, the create request, and at most one rental per need.

Before a create is sent, its intent (a random token, also put in the instance's env as
``GPUQ_VAST_INTENT``) is written to the state file under the lock. A second caller that finds an
intent never sends another create; an answer that was lost (timeout, 5xx) is reconciled by listing
our labelled instances and adopting the one carrying the token
(:meth:`~shared.boxes.providers.vast.box.VastBox._reconcile_intent`). A start stuck past its
deadline is replaced by a rental on another machine, at most ``VASTAI_MAX_REPLACEMENTS_PER_HOUR``.
"""

from __future__ import annotations

import builtins
import logging
import secrets
from collections.abc import Mapping
from typing import Any

from shared.boxes.providers.vast.box import INTENT_ENV, LOGICAL_ENV, SEARCHING_STALE_S, VastBox, snapshot
from shared.boxes.providers.vast.offers import OfferQuery, VastOffer, offer_query, rank_offers
from shared.boxes.providers.vast.statefile import note
from shared.errors import NoCapacity, ProviderError, VastCreateUncertain
from shared.models import Instance, InstanceState

__all__ = ["VastRentals"]

log = logging.getLogger("gpuq.provider.vast")


def _claim(s: dict[str, Any], *, token: str, replaces: int | None, now: float) -> bool:
    """Take the right to rent for this need; False if another caller holds it or the box changed."""
    intent = s.get("intent")
    if intent and not (intent.get("state") == "searching" and now - float(intent.get("at", 0)) > SEARCHING_STALE_S):
        return False
    if s.get("vast_id") != replaces:
        return False  # someone else changed the box meanwhile
    s["intent"] = {"token": token, "state": "searching", "at": now, "replaces": replaces}
    return True


class VastRentals(VastBox):
    """:class:`VastBox` plus renting (see the module docstring)."""

    async def search_offers(self, query: OfferQuery | None = None) -> builtins.list[VastOffer]:
        """Offers matching ``query`` (default: from the settings), cheapest first."""
        query = query or offer_query(self.settings)
        rows = await self.client.search_offers(query.bundles_body())
        return rank_offers(rows, query, self.settings.gpu_list())

    def _create_body(
        self,
        *,
        image: str | None,
        env: Mapping[str, str],
        onstart: str | None,
        disk_gb: float,
        label: str | None,
        runtype: str | None,
        template_hash_id: str | None,
    ) -> dict[str, Any]:
        """The create body, shaped like ``vastai create instance`` sends it."""
        body: dict[str, Any] = {
            "client_id": "me",
            "image": image,
            "env": dict(env),
            "price": None,
            "disk": disk_gb,
            "label": label,
            "extra": None,
            "onstart": onstart,
            "image_login": None,
            "python_utf8": False,
            "lang_utf8": False,
            "use_jupyter_lab": False,
            "jupyter_dir": None,
            "force": False,
            "cancel_unavail": True,
            "template_hash_id": template_hash_id,
            "user": None,
        }
        if runtype:
            body["runtype"] = runtype
        return body

    async def create_instance(
        self,
        offer_id: int,
        *,
        image: str | None = None,
        env: Mapping[str, str] | None = None,
        onstart: str | None = None,
        disk_gb: float | None = None,
        label: str | None = None,
        runtype: str | None = None,
    ) -> int:
        """Rent one offer as given (``gpuq instances create``); not tied to the logical box."""
        templates = self.settings.template_list()
        if not image and not templates and not self.settings.default_image:
            raise ProviderError(
                "give an image (or set VASTAI_DEFAULT_IMAGE / VASTAI_TEMPLATE_IDS)", code="provider_not_configured"
            )
        body = self._create_body(
            image=image or (None if templates else self.settings.default_image),
            env=env or {},
            onstart=onstart,
            disk_gb=disk_gb or self.settings.default_disk_gb,
            label=label if label is not None else self.settings.label,
            runtype=runtype or self.settings.runtype,
            template_hash_id=templates[0] if templates else None,
        )
        async with self.client.bound():
            new_id = await self.client.create_instance(offer_id, body)
        now = self._clock.now()

        def fold(s: dict[str, Any]) -> None:
            s["creates_sent"] = int(s.get("creates_sent", 0)) + 1
            rec = note(s["records"], new_id, now, InstanceState.STARTING, None)
            rec.update(offer_id=offer_id, label=body["label"])

        await self._mutate(fold)
        return new_id

    def _box_env(self, token: str) -> dict[str, str]:
        port = self.settings.agent_port
        return {
            **self._agent_env,
            "GPUQ_AGENT_PROVIDER": "vast",
            "GPUQ_AGENT_INSTANCE_ID": self.logical_id,
            "GPUQ_AGENT_PORT": str(port),
            LOGICAL_ENV: self.logical_id,
            INTENT_ENV: token,
            f"-p {port}:{port}": "1",
        }

    async def _get_logical(self) -> Instance:
        """The logical box's state; a start stuck past its deadline is replaced here."""
        instance, row, state = await self._observe_current()
        if instance.state is InstanceState.STARTING and self._deadline_passed(row, state):
            return await self._replace(row, state)
        return instance

    async def _replace(self, row: Mapping[str, Any] | None, state: Mapping[str, Any]) -> Instance:
        stuck = state.get("vast_id")
        waited = self._clock.now() - float(state.get("waiting_since") or self._clock.now())
        recent = [t for t in state.get("replacements", []) if self._clock.now() - float(t) < 3600.0]
        if len(recent) >= self.settings.max_replacements_per_hour:
            raise NoCapacity(
                f"vast {stuck} not running after {waited:.0f}s and {len(recent)} replacements this "
                "hour already: giving up",
                code="instance_restart_failed",
            )
        log.warning(
            "vast %s (%s) not running %.0fs after the start: renting a replacement", stuck, self.logical_id, waited
        )
        machine = (row or {}).get("machine_id")
        return await self._provision(replaces=stuck, exclude_machine=int(machine) if machine else None)

    async def _provision(self, *, replaces: int | None, exclude_machine: int | None) -> Instance:
        """Rent the best offer for the logical box (then destroy ``replaces``). At most one create per
        need: the intent is claimed under the state-file lock before anything is sent."""
        if not self.settings.default_image and not self.settings.template_list():
            raise ProviderError(
                "cannot rent a box: set VASTAI_DEFAULT_IMAGE (the agent image built from "
                "infra/agent/Dockerfile) or VASTAI_TEMPLATE_IDS",
                code="provider_not_configured",
            )
        token = secrets.token_hex(8)
        now = self._clock.now()
        if not await self._mutate(lambda s: _claim(s, token=token, replaces=replaces, now=now)):
            return self._starting("another caller is renting the box")
        try:
            offer = await self._best_offer(replaces, exclude_machine)
            new_id = await self._send_create(token, replaces, offer)
        except VastCreateUncertain as exc:
            return await self._after_lost_answer(exc, replaces)
        except BaseException:
            await self._clear_intent(token)
            raise
        await self._adopt(new_id, token, offer.id, offer.dph_total, offer.gpu_name)
        await self._destroy_leftovers()
        return Instance(
            id=self.logical_id,
            provider=self.name,
            state=InstanceState.STARTING,
            label=self.settings.label,
            price_per_hour=offer.dph_total,
            detail=f"vast {new_id}: rented from offer {offer.id}",
        )

    async def _best_offer(self, replaces: int | None, exclude_machine: int | None) -> VastOffer:
        excluded = frozenset({exclude_machine}) if exclude_machine is not None else frozenset()
        offers = await self.search_offers(offer_query(self.settings, exclude_machine_ids=excluded))
        if not offers:
            code = "instance_restart_failed" if replaces is not None else "no_capacity"
            wanted = ", ".join(self.settings.gpu_list()) or "any GPU"
            price = f"${self.settings.max_bid_per_hour:g}/h" if self.settings.max_bid_per_hour else "any price"
            raise NoCapacity(
                f"no Vast offer matches ({wanted}, {price}, min VRAM {self.settings.min_vram_gb or 0:g} GB)",
                code=code,
            )
        return offers[0]

    async def _send_create(self, token: str, replaces: int | None, offer: VastOffer) -> int:
        """Mark the intent as sent (a lost answer is reconciled from here on), then send the create."""
        templates = self.settings.template_list()
        body = self._create_body(
            image=self.settings.default_image or None,
            env=self._box_env(token),
            onstart=self.settings.onstart or None,
            disk_gb=self.settings.default_disk_gb,
            label=self.settings.label,
            runtype=self.settings.runtype,
            template_hash_id=templates[0] if templates else None,
        )

        def sending(s: dict[str, Any]) -> None:
            s["intent"] = {
                "token": token,
                "state": "sending",
                "at": self._clock.now(),
                "replaces": replaces,
                "offer_id": offer.id,
                "machine_id": offer.machine_id,
            }
            s["creates_sent"] = int(s.get("creates_sent", 0)) + 1

        await self._mutate(sending)
        log.info("renting offer %s (%s, $%.3f/h) for %s", offer.id, offer.gpu_name, offer.dph_total, self.logical_id)
        return await self.client.create_instance(offer.id, body)

    async def _after_lost_answer(self, exc: VastCreateUncertain, replaces: int | None) -> Instance:
        """The create may have run: adopt it if it shows up by its token, else report it pending."""
        log.warning("create for %s: %s; reconciling by label", self.logical_id, exc.message)
        state = await self._reconcile_intent(await self._mutate(snapshot))
        if state.get("vast_id") is not None and state.get("vast_id") != replaces:
            return await self._get_logical()
        return self._starting("create sent, answer lost: reconciling")
