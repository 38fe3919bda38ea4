"""The Vast.ai provider: one logical GPU box, driven through Vast's REST API (httpx, async).

Logical box and Vast instance
    The control plane drives one box by a *logical* id (``GPUQ_INSTANCE_ID``, e.g. ``vast-1``). Which
    Vast instance backs it changes over time: it starts as ``VASTAI_INSTANCE_ID`` (an instance the
    operator rented) or as nothing (the first ``start`` rents one from the best offer), and a restart
    that stays stuck is replaced by a new rental. The mapping lives in a small JSON state file
    (``<state_dir>/vast-<logical id>.json``, ``flock``-guarded, so every process sees the same box).
    ``get/start/stop`` of the logical id always act on the current Vast instance; raw Vast ids
    (``"1234567"``) are accepted too, for leaked boxes the reaper finds and for ``gpuq instances``.

The package, one concept a module:

    provider.py   VastProvider (the ComputeProvider interface: get/start/stop/destroy/list/reap),
                  build_vast_provider; lifecycle and stop confirmation
    rentals.py    renting: best offer, create body, one rental per need, replacing a stuck start
    box.py        the logical box's state, observations, adoption of a rental, confirmed destroys
    statefile.py  the flock-guarded JSON state file and the per-instance records (cost accounting)
    client.py     VastClient: the REST API with auth, pacing, retries (shared.backoff) and the one
                  boundary where Vast's failures become shared.errors' Vast branch
    rows.py       Vast's instance rows → gpuq's state, the agent's URL, the env a box was given
    offers.py     the offer search query and how offers are ranked

Settings are :class:`shared.settings.VastSettings`; errors (``VastAuthError``, ``VastRateLimited``,
``VastUnavailable``, ``VastRejected``, ``VastCreateUncertain``, ``NoCapacity``) live in
:mod:`shared.errors`. Both are re-exported here for the code that imports them from this package.
"""

from __future__ import annotations

from shared.boxes.providers.vast.box import INTENT_ENV
from shared.boxes.providers.vast.client import RetryPolicy, VastClient
from shared.boxes.providers.vast.offers import OfferQuery, VastOffer, offer_query
from shared.boxes.providers.vast.provider import VastProvider, build_vast_provider
from shared.boxes.providers.vast.rows import agent_url_of, instance_state
from shared.boxes.providers.vast.statefile import VastInstanceRecord
from shared.errors import (
    NoCapacity,
    VastAuthError,
    VastCreateUncertain,
    VastRateLimited,
    VastRejected,
    VastUnavailable,
)
from shared.settings import VastSettings

__all__ = [
    "INTENT_ENV",
    "NoCapacity",
    "OfferQuery",
    "RetryPolicy",
    "VastAuthError",
    "VastClient",
    "VastCreateUncertain",
    "VastInstanceRecord",
    "VastOffer",
    "VastProvider",
    "VastRateLimited",
    "VastRejected",
    "VastSettings",
    "VastUnavailable",
    "agent_url_of",
    "build_vast_provider",
    "instance_state",
    "offer_query",
]
