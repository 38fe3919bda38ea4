"""How long this box stays warm after its last job: the idle policy (``shared/money/idle.py``), fed with the
measured cold start the control plane sends with each job, and with the idle gaps this box observes."""

from __future__ import annotations

import logging

from shared.money.idle import AdaptivePolicy, IdlePolicy, IdlePolicyConfig, make_policy

__all__ = ["KeepWarm"]

log = logging.getLogger("gpuq.agent.keepwarm")


class KeepWarm:
    def __init__(self, config: IdlePolicyConfig) -> None:
        self._config = config
        self._cold_start_s = config.cold_start_s
        self.policy: IdlePolicy = make_policy(config)

    def keep_warm_s(self) -> float:
        return self.policy.keep_warm_s()

    def observe_gap(self, gap_s: float) -> None:
        self.policy.observe_gap(gap_s)

    def update(self, cold_start_s: float | None, price_per_hour: float | None) -> None:
        """A job brought the control plane's current estimates: rebuild the policy when they moved (>10%)."""
        cold = cold_start_s if cold_start_s and cold_start_s > 0 else self._cold_start_s
        price = price_per_hour if price_per_hour and price_per_hour > 0 else self._config.price_per_hour
        if abs(cold - self._cold_start_s) <= 0.1 * self._cold_start_s and price == self._config.price_per_hour:
            return
        history = self.policy.history() if isinstance(self.policy, AdaptivePolicy) else []
        self._config = self._config.model_copy(update={"price_per_hour": price})
        self._cold_start_s = cold
        self.policy = make_policy(self._config, measured_cold_start_s=cold)
        if isinstance(self.policy, AdaptivePolicy):
            for gap in history:
                self.policy.observe_gap(gap)
        log.info(
            "idle policy %s: cold start %.1fs, $%.3f/h → keep-warm horizon %.1fs",
            self._config.policy,
            cold,
            price,
            self.policy.horizon_s(),
        )
