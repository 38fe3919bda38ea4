"""Running estimate of the cold-start duration, from the phases recorded at each box start.

A cold start is three consecutive phases, each recorded as a duration in seconds:

* ``instance_start_s`` -- instance start requested -> instance running (provider boot);
* ``agent_up_s``       -- instance running -> agent up (image pull, agent process ready);
* ``model_loaded_s``   -- agent up -> model loaded (weights on the GPU, ready to serve).

Their sum is the cold start ``C`` the idle policies need (all of it is billed). ``ColdStartEstimator`` keeps
the last ``window`` samples per key (e.g. ``"<provider>/<instance type>"``, see ``estimator_key``) and
estimates ``C`` as the **median** of the recent totals: robust to the occasional very slow boot, and it
follows a drift within ``window / 2`` starts. It is pure in-memory state; ``to_dict``/``from_dict`` give a
JSON-able snapshot a store can persist.

Usage::

    est.record(ColdStartPhases.from_timestamps(requested, running, agent_up, loaded), key="aws/g5.xlarge")
    policy = make_policy(cfg, measured_cold_start_s=est.estimate_s(cfg.cold_start_s, key="aws/g5.xlarge"))
"""

from __future__ import annotations

import statistics
from collections import deque
from collections.abc import Mapping
from typing import Any, Final, Self

from pydantic import BaseModel, ConfigDict, Field

__all__ = ["DEFAULT_KEY", "ColdStartEstimator", "ColdStartPhases", "estimator_key"]

DEFAULT_KEY: Final[str] = "default"
_STATE_VERSION: Final[int] = 1


def estimator_key(provider: str, instance_type: str) -> str:
    """The conventional key: ``"<provider>/<instance type>"``."""
    return f"{provider}/{instance_type}"


class ColdStartPhases(BaseModel):
    """Durations (seconds, >= 0) of the three phases of one cold start."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    instance_start_s: float = Field(ge=0)
    agent_up_s: float = Field(ge=0)
    model_loaded_s: float = Field(ge=0)

    @property
    def total_s(self) -> float:
        """Instance start requested -> model loaded."""
        return self.instance_start_s + self.agent_up_s + self.model_loaded_s

    @classmethod
    def from_timestamps(
        cls, requested_at: float, running_at: float, agent_up_at: float, model_loaded_at: float
    ) -> Self:
        """Phases from four instants (any common clock, seconds); they must not go backwards."""
        if not requested_at <= running_at <= agent_up_at <= model_loaded_at:
            raise ValueError(
                "cold-start timestamps must be ordered requested <= running <= agent_up <= model_loaded, got "
                f"{requested_at!r}, {running_at!r}, {agent_up_at!r}, {model_loaded_at!r}"
            )
        return cls(
            instance_start_s=running_at - requested_at,
            agent_up_s=agent_up_at - running_at,
            model_loaded_s=model_loaded_at - agent_up_at,
        )


class _EstimatorState(BaseModel):
    """Validated shape of ``ColdStartEstimator.to_dict()``."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    version: int = _STATE_VERSION
    window: int = Field(ge=1)
    samples: dict[str, list[ColdStartPhases]] = Field(default_factory=dict)


class ColdStartEstimator:
    """Median of the last ``window`` recorded cold-start totals, per key. Not thread-safe."""

    def __init__(self, *, window: int = 16) -> None:
        if window < 1:
            raise ValueError(f"window must be >= 1, got {window!r}")
        self._window = window
        self._samples: dict[str, deque[ColdStartPhases]] = {}

    @property
    def window(self) -> int:
        return self._window

    def keys(self) -> list[str]:
        return sorted(self._samples)

    def count(self, key: str = DEFAULT_KEY) -> int:
        """How many samples (at most ``window``) are held for ``key``."""
        return len(self._samples.get(key, ()))

    def record(self, phases: ColdStartPhases, *, key: str = DEFAULT_KEY) -> None:
        """Add one measured cold start; the oldest sample of that key drops out beyond ``window``."""
        samples = self._samples.get(key)
        if samples is None:
            samples = self._samples[key] = deque(maxlen=self._window)
        samples.append(phases)

    def estimate_s(self, default: float, *, key: str = DEFAULT_KEY) -> float:
        """Median recent total for ``key``, or ``default`` when nothing was recorded for it."""
        samples = self._samples.get(key)
        if not samples:
            return default
        return float(statistics.median(p.total_s for p in samples))

    def phase_medians(self, key: str = DEFAULT_KEY) -> ColdStartPhases | None:
        """Per-phase medians (which phase dominates), or None when nothing was recorded for ``key``."""
        samples = self._samples.get(key)
        if not samples:
            return None
        return ColdStartPhases(
            instance_start_s=statistics.median(p.instance_start_s for p in samples),
            agent_up_s=statistics.median(p.agent_up_s for p in samples),
            model_loaded_s=statistics.median(p.model_loaded_s for p in samples),
        )

    def to_dict(self) -> dict[str, Any]:
        """JSON-able snapshot: ``{"version": 1, "window": n, "samples": {key: [phases dict, ...]}}``."""
        return _EstimatorState(
            window=self._window,
            samples={key: list(samples) for key, samples in sorted(self._samples.items())},
        ).model_dump(mode="json")

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Self:
        """Inverse of ``to_dict`` (raises ``pydantic.ValidationError``/``ValueError`` on a malformed dict)."""
        state = _EstimatorState.model_validate(dict(data))
        if state.version != _STATE_VERSION:
            raise ValueError(f"unsupported cold-start estimator state version {state.version!r}")
        est = cls(window=state.window)
        for key, samples in state.samples.items():
            for phases in samples[-state.window :]:
                est.record(phases, key=key)
        return est
