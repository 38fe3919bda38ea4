"""Per-caller rate limits: a token bucket per key name, in this process.

Functions scale out, so the limit holds per functions process: per instance in production (with
``max-instances`` N a key can reach N times the rate at most), per gunicorn worker in the dev stack.
That bounds abuse without a store write on every request (which would cost the enqueue path far more
than the limit saves).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

from shared.errors import RateLimited

__all__ = ["RateLimiter"]


class RateLimiter:
    def __init__(
        self, per_min: float, *, burst: float | None = None, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._rate_s = per_min / 60.0
        self._burst = burst if burst is not None else per_min
        self._clock = clock
        self._buckets: dict[str, tuple[float, float]] = {}  # name → (tokens, at)
        self._lock = threading.Lock()

    def check(self, name: str) -> None:
        """Take one token for ``name`` or raise :class:`RateLimited` saying when one is free."""
        if self._rate_s <= 0:
            return
        now = self._clock()
        with self._lock:
            tokens, at = self._buckets.get(name, (self._burst, now))
            tokens = min(self._burst, tokens + (now - at) * self._rate_s)
            if tokens < 1.0:
                self._buckets[name] = (tokens, now)
                raise RateLimited(
                    f"rate limit of {self._rate_s * 60:g} requests/min exceeded for {name!r}",
                    retry_after_s=(1.0 - tokens) / self._rate_s,
                )
            self._buckets[name] = (tokens - 1.0, now)
