"""Idle policies: when to stop a GPU box whose queue has run dry (the ski-rental problem).

Staying warm "rents": it costs the hourly price for every idle second. Stopping "buys": the next job that
arrives pays a cold start -- the boot + model-load time is billed on the GPU and the job (its user) waits for
it. Every policy here answers one question, asked at the moment the box becomes idle (queue empty and no job
running): *how many seconds do I stay up before stopping?*

Cost model (shared with ``shared.sim.simulator``, which charges exactly this)
-------------------------------------------------------------------------
All costs are in **GPU-second equivalents** (one second of the box being billed); dollars are
``units * price_per_hour / 3600``. With

* ``C`` -- the cold-start duration in seconds (instance start requested -> agent up -> model loaded), billed;
* ``p`` -- ``price_per_hour``, the GPU price in $/h;
* ``w`` -- ``wait_value_per_hour``, the $ value of one hour of one job's user waiting,

one second of one job waiting is worth ``w / p`` GPU-seconds, and one cold start costs the billed boot plus the
wait of the job that triggers it::

    B = C * (1 + w / p)                                 (the break-even horizon, ``horizon_s()``)

For one idle gap of length ``g`` (queue became empty -> next job arrives) a policy that keeps warm ``T``
seconds pays ``g`` if ``g <= T`` (stayed up through the gap) and ``T + B`` otherwise (idled ``T``, stopped,
restarted). The clairvoyant offline optimum pays ``min(g, B)``. With ``w = 0`` (the default) ``B`` is exactly
the billed cold start.

Policies (``make_policy`` picks one by ``IdlePolicyConfig.policy``)
-------------------------------------------------------------------
* ``immediate``  -- ``T = 0``: stop as soon as the queue is empty. Unbounded competitive ratio: on gaps
  ``g -> 0`` it pays ``B`` where the optimum pays ``g``.
* ``fixed``      -- ``T = fixed_keep_warm_s``; competitive ratio ``1 + max(B/T, T/B)``.
* ``break-even`` -- ``T = B``: the deterministic rule, 2-competitive (it pays ``g = min(g, B)`` when
  ``g <= B`` and ``2B`` when ``g > B``); no deterministic rule does better.
* ``randomized`` -- ``T`` drawn afresh at every idle moment from the density ``e^(x/B) / (B (e - 1))`` on
  ``[0, B]`` (inverse CDF: ``T = B ln(1 + u (e - 1))``, ``u ~ U[0,1)``); its expected cost is exactly
  ``e/(e-1) * min(g, B)`` (about 1.582x) on every gap, the best possible for a randomized rule.
* ``adaptive``   -- learns the distribution of recent idle gaps (a sliding window of the last
  ``adaptive_window`` gaps) and picks ``T`` in ``[0, B]`` minimising the expected cost
  ``E[g if g <= T else T + B]`` under that empirical distribution; the minimiser is ``0`` or one of the
  observed gaps, to which a small slack (+10 %) is added so that a gap of the same length is not missed by a
  rounding hair. With fewer than ``adaptive_min_history`` gaps it behaves as ``break-even``. It keeps warm
  only when the next job is likely to come within the horizon; it is not worst-case competitive (an
  adversary can change the gap distribution), but the window forgets old behaviour.

``min_keep_warm_s`` / ``max_keep_warm_s`` clamp the ``T`` of every policy (safety rails; with the defaults
0 and 3600 s they only matter for a break-even horizon over an hour).

Feeding ``observe_gap``
-----------------------
Call ``observe_gap(gap_s)`` once per idle period that ended with a new job, ``gap_s`` being the time from the
moment the box became idle (when ``keep_warm_s()`` was asked) to the arrival of the next job -- the *full*
gap, also when the box stopped in between (the control plane knows both instants: it records when the queue
ran dry and it sees the next job arrive). When the end of the gap is unknown (the box stopped and nothing
tells when the next job came, or none came) pass ``math.inf``: it is recorded as a "long" gap, longer than
any keep-warm time -- exact for the decision whenever the true gap exceeded the horizon, pessimistic (biased
toward stopping sooner) otherwise, so pass the finite value whenever you have it. ``NaN`` is ignored and a
negative gap (clock skew) counts as 0. Only ``adaptive`` learns from gaps; the others ignore them.

Policies are small, synchronous and not thread-safe: one instance per box (or per reaper decision loop).
"""

from __future__ import annotations

import math
import random
from bisect import bisect_left, bisect_right, insort
from collections import deque
from collections.abc import Iterable
from typing import Final, Literal, Protocol, Self, runtime_checkable

from pydantic import BaseModel, ConfigDict, Field, model_validator

__all__ = [
    "ADAPTIVE_SLACK",
    "POLICY_NAMES",
    "RANDOMIZED_COMPETITIVE_RATIO",
    "AdaptivePolicy",
    "BreakEvenPolicy",
    "FixedPolicy",
    "IdlePolicy",
    "IdlePolicyConfig",
    "ImmediatePolicy",
    "PolicyName",
    "RandomizedPolicy",
    "break_even_horizon_s",
    "make_policy",
]

PolicyName = Literal["immediate", "fixed", "break-even", "randomized", "adaptive"]
POLICY_NAMES: Final[tuple[PolicyName, ...]] = ("immediate", "fixed", "break-even", "randomized", "adaptive")

#: Expected competitive ratio of the randomized rule, e/(e-1) ~= 1.582.
RANDOMIZED_COMPETITIVE_RATIO: Final[float] = math.e / (math.e - 1.0)

#: Relative slack the adaptive policy adds to the observed gap it chose as keep-warm time (capped at B).
ADAPTIVE_SLACK: Final[float] = 0.10


def break_even_horizon_s(cold_start_s: float, price_per_hour: float, wait_value_per_hour: float = 0.0) -> float:
    """The break-even horizon ``B = C * (1 + w / p)`` in GPU-second equivalents.

    ``C * 1`` is the billed boot + model load; ``C * w / p`` is the wait of the job that triggers the restart,
    converted from $ to GPU-seconds. Staying idle for ``B`` seconds costs exactly one cold start.
    """
    if not (math.isfinite(cold_start_s) and cold_start_s > 0):
        raise ValueError(f"cold_start_s must be a positive finite number, got {cold_start_s!r}")
    if not (math.isfinite(price_per_hour) and price_per_hour > 0):
        raise ValueError(f"price_per_hour must be a positive finite number, got {price_per_hour!r}")
    if not (math.isfinite(wait_value_per_hour) and wait_value_per_hour >= 0):
        raise ValueError(f"wait_value_per_hour must be a finite number >= 0, got {wait_value_per_hour!r}")
    return cold_start_s * (1.0 + wait_value_per_hour / price_per_hour)


class IdlePolicyConfig(BaseModel):
    """Which idle policy to run and the cost model it (and the simulator) uses. Immutable."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    policy: PolicyName = "break-even"
    #: keep-warm time of the ``fixed`` policy, seconds.
    fixed_keep_warm_s: float = Field(default=300.0, ge=0)
    #: cold-start estimate (boot + model load, seconds) used when no measured value is given to make_policy.
    cold_start_s: float = Field(default=120.0, gt=0)
    #: GPU price, $ per hour.
    price_per_hour: float = Field(default=0.5, gt=0)
    #: $ value of one hour of one job's user waiting; 0 means only billed time counts (B == cold start).
    wait_value_per_hour: float = Field(default=0.0, ge=0)
    #: clamps applied to the keep-warm time of every policy, seconds.
    min_keep_warm_s: float = Field(default=0.0, ge=0)
    max_keep_warm_s: float = Field(default=3600.0, ge=0)
    #: number of recent idle gaps the ``adaptive`` policy remembers.
    adaptive_window: int = Field(default=64, ge=1)
    #: below this many remembered gaps ``adaptive`` behaves as ``break-even``.
    adaptive_min_history: int = Field(default=8, ge=1)

    @model_validator(mode="after")
    def _check_ranges(self) -> Self:
        if self.min_keep_warm_s > self.max_keep_warm_s:
            raise ValueError("min_keep_warm_s must be <= max_keep_warm_s")
        if self.adaptive_min_history > self.adaptive_window:
            raise ValueError("adaptive_min_history must be <= adaptive_window")
        return self

    def horizon_s(self, cold_start_s: float | None = None) -> float:
        """``B = C * (1 + w / p)`` with ``C`` = ``cold_start_s`` if given, else the configured estimate."""
        c = self.cold_start_s if cold_start_s is None else cold_start_s
        return break_even_horizon_s(c, self.price_per_hour, self.wait_value_per_hour)


@runtime_checkable
class IdlePolicy(Protocol):
    """What the agent's self-stop loop, the reaper and the simulator call. See the module docstring."""

    @property
    def name(self) -> str:
        """The policy's name, one of ``POLICY_NAMES``."""
        ...

    def keep_warm_s(self) -> float:
        """Seconds to stay up, decided at the moment the box becomes idle (queue empty, no job running).

        Call it once per idle moment: the randomized policy draws a new value at every call.
        """
        ...

    def observe_gap(self, gap_s: float) -> None:
        """Record an ended idle gap (idle moment -> next job arrival, seconds; ``math.inf`` if unknown)."""
        ...

    def horizon_s(self) -> float:
        """The break-even horizon ``B`` this policy currently uses, GPU-second equivalents."""
        ...


def _clean_gap(gap_s: float) -> float | None:
    """None for NaN (ignored); negative gaps (clock skew) count as 0; +inf is kept ("long gap")."""
    if math.isnan(gap_s):
        return None
    return max(0.0, float(gap_s))


class _BasePolicy:
    """Horizon bookkeeping and clamping shared by all policies."""

    name: str = ""

    def __init__(self, config: IdlePolicyConfig, cold_start_s: float) -> None:
        self._config = config
        self._cold_start_s = cold_start_s
        self._horizon = config.horizon_s(cold_start_s)

    @property
    def cold_start_s(self) -> float:
        """The cold-start duration (measured or configured) the horizon is built from."""
        return self._cold_start_s

    def horizon_s(self) -> float:
        return self._horizon

    def keep_warm_s(self) -> float:
        raw = self._raw_keep_warm_s()
        return min(max(raw, self._config.min_keep_warm_s), self._config.max_keep_warm_s)

    def observe_gap(self, gap_s: float) -> None:
        _clean_gap(gap_s)

    def _raw_keep_warm_s(self) -> float:
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"{type(self).__name__}(horizon_s={self._horizon:.3f})"


class ImmediatePolicy(_BasePolicy):
    """Stop as soon as the queue is empty (``T = 0``)."""

    name = "immediate"

    def _raw_keep_warm_s(self) -> float:
        return 0.0


class FixedPolicy(_BasePolicy):
    """Keep warm a fixed ``fixed_keep_warm_s`` seconds."""

    name = "fixed"

    def _raw_keep_warm_s(self) -> float:
        return self._config.fixed_keep_warm_s


class BreakEvenPolicy(_BasePolicy):
    """Keep warm exactly the break-even horizon ``B`` (deterministic, 2-competitive)."""

    name = "break-even"

    def _raw_keep_warm_s(self) -> float:
        return self._horizon


class RandomizedPolicy(_BasePolicy):
    """Keep warm ``T ~ e^(x/B) / (B (e-1))`` on ``[0, B]``, a fresh draw per idle moment (e/(e-1) in expectation).

    ``rng_seed`` makes the draws reproducible (the generator is seeded with a string derived from it, so the
    sequence does not coincide with another ``random.Random(rng_seed)`` such as the trace thinning's).
    """

    name = "randomized"

    def __init__(self, config: IdlePolicyConfig, cold_start_s: float, rng_seed: int | None = None) -> None:
        super().__init__(config, cold_start_s)
        self._rng = random.Random() if rng_seed is None else random.Random(f"gpuq.idle.randomized:{rng_seed}")

    def _raw_keep_warm_s(self) -> float:
        u = self._rng.random()
        return self._horizon * math.log1p(u * (math.e - 1.0))


class AdaptivePolicy(_BasePolicy):
    """Empirical-distribution ski rental over a sliding window of recent gaps; break-even with little history.

    ``keep_warm_s`` returns ``argmin_{T in {0} U {observed gaps <= B}} mean(g if g <= T else T + B)`` (ties go
    to the smaller ``T``), plus ``ADAPTIVE_SLACK`` relative slack, capped at ``B``.
    """

    name = "adaptive"

    def __init__(
        self,
        config: IdlePolicyConfig,
        cold_start_s: float,
        *,
        initial_gaps: Iterable[float] = (),
        slack: float = ADAPTIVE_SLACK,
    ) -> None:
        super().__init__(config, cold_start_s)
        if not (math.isfinite(slack) and slack >= 0):
            raise ValueError(f"slack must be a finite number >= 0, got {slack!r}")
        self._window = config.adaptive_window
        self._min_history = config.adaptive_min_history
        self._slack = slack
        self._recent: deque[float] = deque()
        self._sorted: list[float] = []
        self._choice: float | None = None
        for gap in initial_gaps:
            self.observe_gap(gap)

    def history(self) -> list[float]:
        """The remembered gaps, oldest first (persist it and pass it back as ``initial_gaps``)."""
        return list(self._recent)

    def observe_gap(self, gap_s: float) -> None:
        gap = _clean_gap(gap_s)
        if gap is None:
            return
        if len(self._recent) >= self._window:
            oldest = self._recent.popleft()
            del self._sorted[bisect_left(self._sorted, oldest)]
        self._recent.append(gap)
        insort(self._sorted, gap)
        self._choice = None

    def _raw_keep_warm_s(self) -> float:
        if len(self._recent) < self._min_history:
            return self._horizon
        if self._choice is None:
            self._choice = self._best_keep_warm_s()
        return self._choice

    def _best_keep_warm_s(self) -> float:
        b = self._horizon
        gaps = self._sorted
        n = len(gaps)
        # T = 0: gaps of exactly 0 cost nothing, every other gap costs B.
        zeros = bisect_right(gaps, 0.0)
        best_t, best_cost = 0.0, (n - zeros) * b
        covered = 0.0
        for i, g in enumerate(gaps):
            if g > b:
                break
            covered += g
            # Covering all gaps <= g: each pays its length; the rest pay T + B. With ties, the last of the
            # equal gaps gives the exact cost and earlier ones over-estimate it, so the minimum is right.
            cost = covered + (n - i - 1) * (g + b)
            if cost < best_cost:
                best_t, best_cost = g, cost
        return min(b, best_t * (1.0 + self._slack))


def make_policy(
    config: IdlePolicyConfig,
    *,
    rng_seed: int | None = None,
    measured_cold_start_s: float | None = None,
) -> IdlePolicy:
    """Build the policy named by ``config.policy``.

    ``measured_cold_start_s`` (e.g. ``ColdStartEstimator.estimate_s(config.cold_start_s, key=...)``) replaces
    the configured ``cold_start_s`` estimate in the horizon. ``rng_seed`` seeds the randomized policy (None:
    fresh entropy); the other policies are deterministic.
    """
    cold = config.cold_start_s if measured_cold_start_s is None else float(measured_cold_start_s)
    if not (math.isfinite(cold) and cold > 0):
        raise ValueError(f"measured_cold_start_s must be a positive finite number, got {measured_cold_start_s!r}")
    match config.policy:
        case "immediate":
            return ImmediatePolicy(config, cold)
        case "fixed":
            return FixedPolicy(config, cold)
        case "break-even":
            return BreakEvenPolicy(config, cold)
        case "randomized":
            return RandomizedPolicy(config, cold, rng_seed)
        case "adaptive":
            return AdaptivePolicy(config, cold)
