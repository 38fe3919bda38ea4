"""Per-caller rate limits: a token bucket per key name, kept in the store.

Functions scale out, so a bucket in one process's memory would give a key N times its limit under N
instances. The bucket is a store record (``ratelimit/<name>``: tokens left and when), taken with one
compare-and-set per request, so every functions instance (and every gunicorn worker of the dev stack)
draws from the same bucket. Without a store (unit tests, tools) the bucket lives in this process.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from shared.errors import RateLimited

if TYPE_CHECKING:
    from shared.store.base import JobStore

__all__ = ["RATE_KIND", "RateLimiter"]

RATE_KIND = "ratelimit"


class RateLimiter:
    """``per_min`` requests a minute per name, in bursts of up to ``burst`` (default: ``per_min``)."""

    def __init__(
        self,
        per_min: float,
        *,
        burst: float | None = None,
        store: JobStore | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._rate_s = per_min / 60.0
        self._burst = burst if burst is not None else per_min
        self._store = store
        self._clock = clock
        self._buckets: dict[str, dict[str, Any]] = {}  # without a store: name → bucket
        self._lock = threading.Lock()

    def check(self, name: str) -> None:
        """Take one token for ``name`` or raise :class:`RateLimited` saying when one is free."""
        if self._rate_s <= 0:
            return
        now = self._clock()
        short: list[float] = []

        def take(bucket: dict[str, Any] | None) -> dict[str, Any] | None:
            short.clear()
            tokens, at = (bucket["tokens"], bucket["at"]) if bucket else (self._burst, now)
            tokens = min(self._burst, tokens + max(0.0, now - at) * self._rate_s)
            if tokens < 1.0:
                short.append(1.0 - tokens)
                return None  # refused: nothing to write (the refill is computed from ``at`` next time)
            return {"tokens": tokens - 1.0, "at": max(now, at)}

        if self._store is not None:
            self._store.modify_record(RATE_KIND, name, take)
        else:
            with self._lock:
                taken = take(self._buckets.get(name))
                if taken is not None:
                    self._buckets[name] = taken
        if short:
            raise RateLimited(
                f"rate limit of {self._rate_s * 60:g} requests/min exceeded for {name!r}",
                retry_after_s=short[0] / self._rate_s,
            )
