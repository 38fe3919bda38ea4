"""Idle policies (ski rental) and the cold-start estimator."""

from __future__ import annotations

import itertools
import math
import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from shared.boxes.coldstart import ColdStartEstimator, ColdStartPhases, estimator_key
from shared.money.idle import (
    POLICY_NAMES,
    RANDOMIZED_COMPETITIVE_RATIO,
    AdaptivePolicy,
    BreakEvenPolicy,
    IdlePolicy,
    IdlePolicyConfig,
    PolicyName,
    RandomizedPolicy,
    break_even_horizon_s,
    make_policy,
)
from shared.sim.simulator import ServiceModel, gap_game, simulate
from shared.sim.trace import TraceRequest

# Service time == generated tokens (seconds), no prompt term: traces below are written in seconds.
SECONDS = ServiceModel(tokens_per_s=1.0, prefill_tokens_per_s=0.0)
REL = 1e-9


def cfg(policy: PolicyName = "break-even", **kw: float) -> IdlePolicyConfig:
    base: dict[str, float] = {"cold_start_s": 120.0, "price_per_hour": 0.5, "max_keep_warm_s": 1e9}
    base.update(kw)
    return IdlePolicyConfig.model_validate({"policy": policy, **base})


def trace_from(gaps: list[float], services: list[int]) -> list[TraceRequest]:
    """Job i+1 arrives ``gaps[i]`` after job i *ends* on an always-warm box (so the warm idle gaps are ``gaps``)."""
    reqs = [TraceRequest(0.0, 0, services[0])]
    t = 0.0
    for gap, prev, cur in zip(gaps, services, services[1:], strict=False):
        t += prev + gap
        reqs.append(TraceRequest(t, 0, cur))
    return reqs


# ------------------------------------------------------------------------------------------ config & factory


def test_config_defaults_and_horizon_formula() -> None:
    c = IdlePolicyConfig()
    assert c.policy == "break-even"
    assert (c.fixed_keep_warm_s, c.cold_start_s, c.price_per_hour, c.wait_value_per_hour) == (300, 120, 0.5, 0)
    assert c.horizon_s() == 120.0  # w = 0: B is exactly the billed cold start
    assert IdlePolicyConfig(wait_value_per_hour=1.0).horizon_s() == pytest.approx(120 * (1 + 1.0 / 0.5))
    assert IdlePolicyConfig(wait_value_per_hour=1.0).horizon_s(cold_start_s=60) == pytest.approx(180)
    assert break_even_horizon_s(100, 2.0, 1.0) == pytest.approx(150)
    with pytest.raises(ValueError):
        break_even_horizon_s(0, 1, 0)


@pytest.mark.parametrize(
    "bad",
    [
        {"policy": "sometimes"},
        {"price_per_hour": 0},
        {"cold_start_s": -1},
        {"wait_value_per_hour": -0.1},
        {"min_keep_warm_s": 10, "max_keep_warm_s": 5},
        {"adaptive_window": 4, "adaptive_min_history": 5},
        {"cold_start_s": math.inf},
        {"unknown_field": 1},
    ],
)
def test_config_rejects_bad_values(bad: dict[str, object]) -> None:
    with pytest.raises(ValidationError):
        IdlePolicyConfig.model_validate(bad)


def test_make_policy_builds_every_policy_by_name() -> None:
    for name in POLICY_NAMES:
        pol = make_policy(cfg(name), rng_seed=1)
        assert isinstance(pol, IdlePolicy)
        assert pol.name == name
        assert pol.horizon_s() == 120.0
        assert 0.0 <= pol.keep_warm_s() <= 120.0 or name == "fixed"


def test_fixed_immediate_break_even_keep_warm() -> None:
    assert make_policy(cfg("immediate")).keep_warm_s() == 0.0
    assert make_policy(cfg("fixed", fixed_keep_warm_s=42)).keep_warm_s() == 42.0
    assert make_policy(cfg("break-even", wait_value_per_hour=0.25)).keep_warm_s() == pytest.approx(180.0)


def test_measured_cold_start_replaces_the_estimate() -> None:
    pol = make_policy(cfg("break-even", wait_value_per_hour=0.5), measured_cold_start_s=90.0)
    assert pol.horizon_s() == pytest.approx(180.0)
    assert pol.keep_warm_s() == pytest.approx(180.0)
    with pytest.raises(ValueError):
        make_policy(cfg(), measured_cold_start_s=0.0)
    with pytest.raises(ValueError):
        make_policy(cfg(), measured_cold_start_s=math.nan)


def test_clamps_apply_to_every_policy() -> None:
    c = cfg("break-even", min_keep_warm_s=30, max_keep_warm_s=100)
    assert make_policy(c).keep_warm_s() == 100.0
    assert make_policy(c.model_copy(update={"policy": "immediate"})).keep_warm_s() == 30.0
    rnd = make_policy(c.model_copy(update={"policy": "randomized"}), rng_seed=3)
    assert all(30.0 <= rnd.keep_warm_s() <= 100.0 for _ in range(200))


def test_observe_gap_accepts_inf_nan_and_negative() -> None:
    for name in POLICY_NAMES:
        pol = make_policy(cfg(name), rng_seed=0)
        for gap in (math.inf, math.nan, -5.0, 0.0, 12.5):
            pol.observe_gap(gap)
        assert math.isfinite(pol.keep_warm_s())
    ad = AdaptivePolicy(cfg("adaptive"), 120.0)
    for gap in (math.inf, math.nan, -5.0):
        ad.observe_gap(gap)
    assert ad.history() == [math.inf, 0.0]  # NaN ignored, negative counted as 0


# ------------------------------------------------------------------------------------------- break-even


gap_lists = st.lists(
    st.one_of(
        st.floats(min_value=0.0, max_value=5_000.0, allow_nan=False),
        st.sampled_from([0.0, 60.0, 120.0, 120.000001, 240.0, 360.0]),
    ),
    min_size=1,
    max_size=60,
)


@settings(max_examples=200, deadline=None, database=None)
@given(
    gaps=gap_lists,
    cold=st.floats(min_value=1.0, max_value=600.0),
    price=st.floats(min_value=0.05, max_value=10.0),
    wait_value=st.sampled_from([0.0, 0.1, 0.5, 2.0, 20.0]),
)
def test_break_even_is_2_competitive_on_any_gap_sequence(
    gaps: list[float], cold: float, price: float, wait_value: float
) -> None:
    pol = make_policy(cfg("break-even", cold_start_s=cold, price_per_hour=price, wait_value_per_hour=wait_value))
    online, offline = gap_game(pol, gaps)
    assert online <= 2.0 * offline * (1 + REL) + 1e-9


@settings(max_examples=100, deadline=None, database=None)
@given(
    gaps=st.lists(st.floats(min_value=0.0, max_value=2_000.0), min_size=0, max_size=40),
    services=st.lists(st.integers(min_value=0, max_value=300), min_size=41, max_size=41),
)
def test_break_even_within_2x_in_the_simulator_when_waiting_is_free(gaps: list[float], services: list[int]) -> None:
    """w = 0: every trace, including cold-start backlogs absorbing gaps, first start and billed tail."""
    reqs = trace_from(gaps, services[: len(gaps) + 1])
    res = simulate(reqs, cfg("break-even"), service=SECONDS)
    assert res.cost_ratio <= 2.0 * (1 + REL)


@settings(max_examples=100, deadline=None, database=None)
@given(
    gaps=st.lists(st.floats(min_value=120.001, max_value=3_000.0), min_size=0, max_size=40),
    services=st.lists(st.integers(min_value=0, max_value=300), min_size=41, max_size=41),
    wait_value=st.sampled_from([0.1, 0.5, 2.0, 10.0]),
)
def test_break_even_within_2x_in_the_simulator_with_priced_waiting(
    gaps: list[float], services: list[int], wait_value: float
) -> None:
    """w > 0: the bound holds whenever a cold start delays only the job that triggered it (gaps > C)."""
    reqs = trace_from(gaps, services[: len(gaps) + 1])
    res = simulate(reqs, cfg("break-even", wait_value_per_hour=wait_value), service=SECONDS)
    assert res.cost_ratio <= 2.0 * (1 + REL)


def test_break_even_worst_case_is_tight() -> None:
    """Gaps just past the horizon: break-even pays B idle + B restart against the optimum's B."""
    online, offline = gap_game(make_policy(cfg()), [120.0 + 1e-6] * 50)
    assert online / offline == pytest.approx(2.0, rel=1e-6)


# ------------------------------------------------------------------------------------------- randomized


def test_randomized_draws_lie_in_0_B_and_follow_the_density() -> None:
    pol = RandomizedPolicy(cfg("randomized"), 120.0, rng_seed=7)
    draws = [pol.keep_warm_s() for _ in range(20_000)]
    assert min(draws) >= 0.0
    assert max(draws) <= 120.0
    # E[T] = B / (e - 1); P(T <= B/2) = (e^0.5 - 1) / (e - 1)
    assert sum(draws) / len(draws) == pytest.approx(120.0 / (math.e - 1), rel=0.02)
    below_half = sum(1 for d in draws if d <= 60.0) / len(draws)
    assert below_half == pytest.approx((math.exp(0.5) - 1) / (math.e - 1), abs=0.015)


def test_randomized_is_deterministic_for_a_seed() -> None:
    a = make_policy(cfg("randomized"), rng_seed=5)
    b = make_policy(cfg("randomized"), rng_seed=5)
    c = make_policy(cfg("randomized"), rng_seed=6)
    sa = [a.keep_warm_s() for _ in range(10)]
    assert sa == [b.keep_warm_s() for _ in range(10)]
    assert sa != [c.keep_warm_s() for _ in range(10)]


ADVERSARIAL = {
    "just past the horizon": [120.0 + 1e-6] * 40,
    "at the horizon": [120.0] * 40,
    "half the horizon": [60.0] * 40,
    "short": [5.0] * 40,
    "very long": [10_000.0] * 40,
    "mixed": [10.0, 119.0, 121.0, 500.0, 60.0, 1.0, 240.0, 90.0] * 5,
}


@pytest.mark.parametrize("name", sorted(ADVERSARIAL))
def test_randomized_is_e_over_e_minus_1_competitive_in_expectation(name: str) -> None:
    """Expected cost is exactly e/(e-1) * min(g, B) on every gap: the average over many seeds must sit there."""
    gaps = ADVERSARIAL[name]
    online = offline = 0.0
    for seed in range(400):
        on, off = gap_game(make_policy(cfg("randomized"), rng_seed=seed), gaps)
        online += on
        offline += off
    ratio = online / offline
    assert ratio <= RANDOMIZED_COMPETITIVE_RATIO * 1.02
    assert ratio >= RANDOMIZED_COMPETITIVE_RATIO * 0.98  # and tight: the density is the right one
    assert ratio < 2.0 - 0.3  # clearly better than deterministic break-even in the worst case


def test_randomized_beats_break_even_worst_case_in_the_simulator() -> None:
    # warm gaps > C + B: after each restart's delay C the box still idles past B, so every gap stops
    reqs = trace_from([240.5] * 300, [1] * 301)
    det = simulate(reqs, cfg("break-even"), service=SECONDS).cost_ratio
    rnd = [simulate(reqs, cfg("randomized"), service=SECONDS, seed=s).cost_ratio for s in range(20)]
    assert det == pytest.approx(2.0, rel=0.02)
    assert sum(rnd) / len(rnd) <= RANDOMIZED_COMPETITIVE_RATIO * 1.03


# -------------------------------------------------------------------------------------------- immediate


def test_immediate_is_unbounded_in_the_gap_game() -> None:
    ratios = []
    for gap in (60.0, 6.0, 0.6, 0.06):
        online, offline = gap_game(make_policy(cfg("immediate")), [gap] * 100)
        ratios.append(online / offline)
    assert ratios == pytest.approx([2.0, 20.0, 200.0, 2000.0])  # B / g


def test_immediate_is_unbounded_when_waiting_has_a_price() -> None:
    """A first job, then instant jobs every g seconds. Stopping each time the queue drains makes every restart
    delay the ~C/g jobs that arrive during the boot by ~C/2 each: the ratio grows like w C / (2 p g)."""
    ratios = []
    for gap in (60.0, 15.0, 4.0, 1.0, 0.25):
        reqs = trace_from([200.0] + [gap] * 3_000, [0] * 3_002)
        ratios.append(simulate(reqs, cfg("immediate", wait_value_per_hour=0.5), service=SECONDS).cost_ratio)
    assert all(a < b for a, b in itertools.pairwise(ratios)), ratios
    assert ratios[-1] > 50 * ratios[0]
    assert ratios[-1] > 100
    # ... while break-even, which stays warm through the 200 s gap (< B = 240 s), keeps within its bound
    reqs = trace_from([200.0] + [0.25] * 3_000, [0] * 3_002)
    assert simulate(reqs, cfg("break-even", wait_value_per_hour=0.5), service=SECONDS).cost_ratio <= 2.0


@settings(max_examples=100, deadline=None, database=None)
@given(
    gaps=st.lists(st.floats(min_value=0.0, max_value=1_000.0), min_size=0, max_size=40),
    services=st.lists(st.integers(min_value=0, max_value=300), min_size=41, max_size=41),
)
def test_immediate_never_costs_more_than_the_reference_when_waiting_is_free(
    gaps: list[float], services: list[int]
) -> None:
    """w = 0: a cold start's backlog absorbs the following gaps for free, so stopping at once batches jobs."""
    reqs = trace_from(gaps, services[: len(gaps) + 1])
    res = simulate(reqs, cfg("immediate"), service=SECONDS)
    assert res.cost_ratio <= 1.0 + REL


# --------------------------------------------------------------------------------------------- adaptive


def test_adaptive_falls_back_to_break_even_with_little_history() -> None:
    c = cfg("adaptive", adaptive_window=16, adaptive_min_history=8, wait_value_per_hour=0.5)
    ad = make_policy(c)
    be = make_policy(c.model_copy(update={"policy": "break-even"}))
    for _ in range(7):
        assert ad.keep_warm_s() == be.keep_warm_s() == pytest.approx(240.0)
        ad.observe_gap(3.0)
    assert ad.keep_warm_s() == be.keep_warm_s()
    ad.observe_gap(3.0)  # 8th gap: enough history
    assert ad.keep_warm_s() == pytest.approx(3.3)  # the observed gap plus 10 % slack


def test_adaptive_learns_the_gap_distribution() -> None:
    c = cfg("adaptive", adaptive_window=20, adaptive_min_history=4)
    ad = AdaptivePolicy(c, 120.0, initial_gaps=[1_000.0] * 20)
    assert ad.keep_warm_s() == 0.0  # every gap is longer than B: stop at once
    for _ in range(20):
        ad.observe_gap(50.0)  # the window forgets the long gaps
    assert ad.history() == [50.0] * 20
    assert ad.keep_warm_s() == pytest.approx(55.0)
    for g in [500.0] * 14:  # 6 of 20 within the horizon: covering them costs more than it saves
        ad.observe_gap(g)
    assert ad.keep_warm_s() == 0.0
    assert ad.horizon_s() == 120.0


@settings(max_examples=100, deadline=None, database=None)
@given(gaps=st.lists(st.floats(min_value=0.0, max_value=1_000.0), min_size=0, max_size=80))
def test_adaptive_keep_warm_is_within_0_and_horizon(gaps: list[float]) -> None:
    ad = make_policy(cfg("adaptive", adaptive_window=32, adaptive_min_history=4))
    for g in gaps:
        assert 0.0 <= ad.keep_warm_s() <= ad.horizon_s()
        ad.observe_gap(g)


def bursty_periodic_trace(periods: int, seed: int = 0) -> list[TraceRequest]:
    """Bursts of 6 one-second jobs 8-12 s apart, one burst every 15 minutes."""
    rng = random.Random(seed)
    reqs = []
    for p in range(periods):
        t = p * 900.0
        for _ in range(6):
            reqs.append(TraceRequest(t, 0, 1))
            t += rng.uniform(8.0, 12.0)
    return reqs


@pytest.mark.parametrize("wait_value", [0.0, 0.5])
def test_adaptive_beats_break_even_on_a_bursty_periodic_trace(wait_value: float) -> None:
    reqs = bursty_periodic_trace(100)
    be = simulate(reqs, cfg("break-even", wait_value_per_hour=wait_value), service=SECONDS)
    ad = simulate(reqs, cfg("adaptive", wait_value_per_hour=wait_value), service=SECONDS)
    assert ad.cost_ratio < 0.8 * be.cost_ratio
    assert ad.billed_gpu_hours < be.billed_gpu_hours
    assert ad.cold_starts == be.cold_starts == 100  # same delays: both stop between bursts
    assert ad.delayed_fraction == be.delayed_fraction


def test_adaptive_beats_break_even_in_the_gap_game_on_bimodal_gaps() -> None:
    gaps = [10.0, 10.0, 10.0, 10.0, 10.0, 800.0] * 50
    be_on, opt = gap_game(make_policy(cfg("break-even")), gaps)
    ad_on, _ = gap_game(make_policy(cfg("adaptive")), gaps)
    assert ad_on < 0.7 * be_on
    assert ad_on / opt < 1.2


# ------------------------------------------------------------------------------------- cold-start estimate


def test_cold_start_phases() -> None:
    p = ColdStartPhases.from_timestamps(100.0, 130.0, 145.0, 220.0)
    assert (p.instance_start_s, p.agent_up_s, p.model_loaded_s) == (30.0, 15.0, 75.0)
    assert p.total_s == 120.0
    with pytest.raises(ValueError):
        ColdStartPhases.from_timestamps(100.0, 90.0, 145.0, 220.0)
    with pytest.raises(ValidationError):
        ColdStartPhases(instance_start_s=-1, agent_up_s=0, model_loaded_s=0)


def test_cold_start_estimator_median_window_and_keys() -> None:
    est = ColdStartEstimator(window=5)
    assert est.estimate_s(120.0) == 120.0  # nothing recorded: the default
    key = estimator_key("aws", "g5.xlarge")
    for total in (100.0, 110.0, 1_000.0):  # one very slow boot does not move the median much
        est.record(ColdStartPhases(instance_start_s=total - 60, agent_up_s=10, model_loaded_s=50), key=key)
    assert est.estimate_s(120.0, key=key) == pytest.approx(110.0)
    assert est.estimate_s(120.0) == 120.0  # other keys unaffected
    for _ in range(5):
        est.record(ColdStartPhases(instance_start_s=20, agent_up_s=10, model_loaded_s=50), key=key)
    assert est.count(key) == 5
    assert est.estimate_s(120.0, key=key) == pytest.approx(80.0)  # old samples dropped out of the window
    medians = est.phase_medians(key)
    assert medians is not None
    assert medians.model_loaded_s == 50.0
    assert est.phase_medians("nope") is None
    assert est.keys() == [key]


def test_cold_start_estimator_round_trips_through_a_dict() -> None:
    est = ColdStartEstimator(window=3)
    for i in range(4):
        est.record(ColdStartPhases(instance_start_s=10 * i, agent_up_s=5, model_loaded_s=30), key="a")
    est.record(ColdStartPhases(instance_start_s=1, agent_up_s=2, model_loaded_s=3))
    data = est.to_dict()
    back = ColdStartEstimator.from_dict(data)
    assert back.to_dict() == data
    assert back.window == 3
    assert back.estimate_s(0.0, key="a") == est.estimate_s(0.0, key="a") == 55.0
    assert back.estimate_s(0.0) == 6.0
    with pytest.raises(ValueError):
        ColdStartEstimator.from_dict({**data, "version": 99})
    with pytest.raises(ValidationError):
        ColdStartEstimator.from_dict({"window": 0})


def test_estimate_feeds_make_policy() -> None:
    est = ColdStartEstimator()
    est.record(ColdStartPhases(instance_start_s=40, agent_up_s=10, model_loaded_s=40))
    c = cfg("break-even")
    pol = make_policy(c, measured_cold_start_s=est.estimate_s(c.cold_start_s))
    assert isinstance(pol, BreakEvenPolicy)
    assert pol.horizon_s() == pytest.approx(90.0)
    assert pol.cold_start_s == 90.0
