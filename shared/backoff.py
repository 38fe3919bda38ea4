"""Backoff: how long to wait between tries of something that may fail for a while.

A :class:`Backoff` is a frozen policy (first delay, growth factor, cap, jitter, and when to give up:
after ``max_tries`` tries, or once ``deadline_s`` has passed). :meth:`Backoff.delays` hands out the
waits of one run as an iterator; the caller does the trying and the sleeping, so one policy serves
sync code (``time.sleep``) and async code (``asyncio.sleep``) alike::

    delays = POLICY.delays()
    while True:
        outcome = try_once()
        if outcome.ok:
            return outcome
        delay = next(delays, None)   # None: the policy gives up
        if delay is None:
            raise GaveUp(...)
        time.sleep(delay)

A server that says when to come back (``Retry-After``) is honoured by passing its delay to
:meth:`Delays.override` before asking for the next one. Randomness comes from an injectable
``random.Random`` and time from an injectable monotonic clock, so tests are deterministic.
"""

from __future__ import annotations

import math
import random
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass

__all__ = ["Backoff", "Delays", "parse_retry_after"]


@dataclass(frozen=True)
class Backoff:
    """Delays ``first_s, first_s * factor, first_s * factor**2, …``, each at most ``cap_s``, then
    multiplied by a factor drawn uniformly from ``jitter`` (``(1.0, 1.0)``: no jitter; ``(0.25, 1.0)``:
    between a quarter of the delay and all of it, so callers failing together spread out).

    ``max_tries`` counts tries, the first one included (so a run has ``max_tries - 1`` delays);
    ``deadline_s`` bounds a run's total time: no delay reaches past it, and none is handed out once it
    has passed. Neither set: the run never gives up.
    """

    first_s: float
    factor: float = 2.0
    cap_s: float = math.inf
    jitter: tuple[float, float] = (1.0, 1.0)
    max_tries: int | None = None
    deadline_s: float | None = None

    def __post_init__(self) -> None:
        low, high = self.jitter
        if self.first_s < 0 or self.cap_s < 0:
            raise ValueError("delays are not negative")
        if self.factor < 1.0:
            raise ValueError("factor is at least 1 (delays never shrink)")
        if not 0.0 <= low <= high:
            raise ValueError("jitter is (low, high) with 0 <= low <= high")
        if self.max_tries is not None and self.max_tries < 1:
            raise ValueError("max_tries counts tries: at least 1")
        if self.deadline_s is not None and self.deadline_s < 0:
            raise ValueError("deadline_s is not negative")

    def after_try(self, try_number: int, *, rng: random.Random | None = None) -> float:
        """The delay after failed try ``try_number`` (1-based), for retries that are not one run in one
        process: each callback try is its own queue task, so the try number is all that carries over."""
        try:
            base = min(self.first_s * self.factor ** max(0, try_number - 1), self.cap_s)
        except OverflowError:
            base = self.cap_s
        low, high = self.jitter
        return base * (low if low == high else (rng or random.Random()).uniform(low, high))

    def delays(self, *, rng: random.Random | None = None, clock: Callable[[], float] = time.monotonic) -> Delays:
        """The delays of one run; its deadline (if any) counts from this call."""
        return Delays(self, rng=rng or random.Random(), clock=clock)


class Delays(Iterator[float]):
    """The waits of one run of a :class:`Backoff`. ``next()`` after a failed try gives the delay before
    the next one; it raises ``StopIteration`` (``next(delays, None)`` gives ``None``) when the policy
    gives up."""

    def __init__(self, policy: Backoff, *, rng: random.Random, clock: Callable[[], float]) -> None:
        self.policy = policy
        self._rng = rng
        self._clock = clock
        self._deadline = None if policy.deadline_s is None else clock() + policy.deadline_s
        self._base = min(policy.first_s, policy.cap_s)
        self._override: float | None = None
        self._tries = 1

    @property
    def tries(self) -> int:
        """The number of the try under way: 1 until the first delay is handed out, then 2, …"""
        return self._tries

    def override(self, delay_s: float) -> None:
        """The next delay is ``delay_s`` (a server's ``Retry-After``), without jitter, at most ``cap_s``.
        It still counts as one of the run's delays, and the growth goes on behind it."""
        self._override = min(max(0.0, delay_s), self.policy.cap_s)

    def __iter__(self) -> Delays:
        return self

    def __next__(self) -> float:
        policy = self.policy
        if policy.max_tries is not None and self._tries >= policy.max_tries:
            raise StopIteration
        remaining = math.inf if self._deadline is None else self._deadline - self._clock()
        if remaining <= 0:
            raise StopIteration
        delay = self._override if self._override is not None else self._base * self._jitter()
        self._override = None
        # Grown step by step (not first * factor**n): a run that never gives up must not overflow.
        self._base = min(self._base * policy.factor, policy.cap_s)
        self._tries += 1
        return min(delay, remaining)

    def _jitter(self) -> float:
        low, high = self.policy.jitter
        return low if low == high else self._rng.uniform(low, high)


def parse_retry_after(value: str | None) -> float | None:
    """Seconds from a ``Retry-After`` header in its delta-seconds form (``"3"``, ``"1.5"``); ``None``
    when absent or in another form (an HTTP date): the caller's own backoff decides then."""
    text = (value or "").strip()
    if not text.replace(".", "", 1).isdigit():
        return None
    return float(text)
