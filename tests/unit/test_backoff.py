"""The one retry helper: delays, cap, jitter bounds, give-up rules, Retry-After override."""

from __future__ import annotations

import asyncio
import random

import pytest

from shared.backoff import Backoff, parse_retry_after


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_without_jitter_the_delays_grow_by_the_factor_up_to_the_cap() -> None:
    delays = Backoff(first_s=0.5, factor=2.0, cap_s=3.0, max_tries=7).delays()
    assert list(delays) == [0.5, 1.0, 2.0, 3.0, 3.0, 3.0]


def test_max_tries_counts_tries_so_a_run_has_one_delay_fewer() -> None:
    assert list(Backoff(first_s=1.0, max_tries=1).delays()) == []
    delays = Backoff(first_s=1.0, factor=1.0, max_tries=3).delays()
    assert delays.tries == 1
    assert next(delays) == 1.0 and delays.tries == 2
    assert next(delays) == 1.0 and delays.tries == 3
    assert next(delays, None) is None and delays.tries == 3


def test_a_seeded_rng_gives_the_same_jittered_delays() -> None:
    policy = Backoff(first_s=0.5, cap_s=8.0, jitter=(0.25, 1.0), max_tries=6)
    first = list(policy.delays(rng=random.Random(7)))
    again = list(policy.delays(rng=random.Random(7)))
    other = list(policy.delays(rng=random.Random(8)))
    assert first == again and first != other and len(first) == 5


@pytest.mark.parametrize("jitter", [(0.25, 1.0), (0.5, 1.5), (0.0, 1.0)])
def test_jitter_stays_within_its_bounds_and_the_cap_bounds_the_delay_before_it(jitter: tuple[float, float]) -> None:
    low, high = jitter
    policy = Backoff(first_s=0.2, factor=2.0, cap_s=30.0, jitter=jitter)
    delays = policy.delays(rng=random.Random(1))
    base = 0.2
    for _ in range(2000):
        delay = next(delays)
        assert base * low <= delay <= base * high
        assert delay <= policy.cap_s * high
        base = min(base * 2.0, 30.0)


def test_the_cap_is_never_exceeded_with_jitter_at_most_one() -> None:
    delays = Backoff(first_s=0.5, cap_s=8.0, jitter=(0.25, 1.0)).delays(rng=random.Random(3))
    seen = [next(delays) for _ in range(200)]
    assert max(seen) <= 8.0 and min(seen) >= 0.5 * 0.25
    assert max(seen[10:]) > 6.0  # the cap is reached, not just respected


def test_a_run_that_never_gives_up_does_not_overflow() -> None:
    delays = Backoff(first_s=0.2, factor=2.0, cap_s=30.0).delays()
    for _ in range(5000):
        assert next(delays) <= 30.0


def test_the_deadline_clips_the_last_delay_and_then_gives_up() -> None:
    clock = FakeClock()
    delays = Backoff(first_s=0.5, factor=1.0, deadline_s=1.2).delays(clock=clock)
    assert next(delays) == 0.5
    clock.now += 0.5
    assert next(delays) == 0.5
    clock.now += 0.5
    assert next(delays) == pytest.approx(0.2)
    clock.now += 0.2
    assert next(delays, None) is None


def test_a_deadline_counts_from_the_start_of_the_run() -> None:
    clock = FakeClock()
    policy = Backoff(first_s=1.0, deadline_s=5.0)
    clock.now += 60.0  # a policy made long ago: its runs still get their full time
    delays = policy.delays(clock=clock)
    assert next(delays) == 1.0


def test_retry_after_overrides_the_next_delay_only_up_to_the_cap() -> None:
    delays = Backoff(first_s=1.0, factor=2.0, cap_s=60.0, jitter=(0.5, 1.5), max_tries=5).delays(rng=random.Random(2))
    delays.override(7.0)
    assert next(delays) == 7.0  # the server's word, no jitter
    second = next(delays)
    assert 2.0 * 0.5 <= second <= 2.0 * 1.5  # the growth went on behind the override
    delays.override(3600.0)
    assert next(delays) == 60.0
    delays.override(-1.0)
    assert next(delays) == 0.0
    assert next(delays, None) is None  # an override is still one of the run's delays


def test_an_override_is_clipped_by_the_deadline_too() -> None:
    clock = FakeClock()
    delays = Backoff(first_s=1.0, deadline_s=2.0).delays(clock=clock)
    delays.override(10.0)
    assert next(delays) == 2.0


def test_delays_are_usable_from_async_code() -> None:
    async def retry() -> int:
        tries = 1
        delays = Backoff(first_s=0.001, max_tries=3).delays()
        for delay in delays:
            await asyncio.sleep(delay)
            tries += 1
        return tries

    assert asyncio.run(retry()) == 3


@pytest.mark.parametrize(
    "kwargs",
    [
        {"first_s": -1.0},
        {"first_s": 1.0, "cap_s": -1.0},
        {"first_s": 1.0, "factor": 0.5},
        {"first_s": 1.0, "jitter": (1.5, 1.0)},
        {"first_s": 1.0, "jitter": (-0.1, 1.0)},
        {"first_s": 1.0, "max_tries": 0},
        {"first_s": 1.0, "deadline_s": -1.0},
    ],
)
def test_a_policy_that_makes_no_sense_is_refused(kwargs: dict[str, object]) -> None:
    with pytest.raises(ValueError):
        Backoff(**kwargs)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("header", "seconds"),
    [("3", 3.0), (" 1.5 ", 1.5), ("0", 0.0), (None, None), ("", None), ("soon", None), ("-2", None)],
)
def test_retry_after_in_seconds_is_parsed_and_other_forms_are_left_to_the_policy(
    header: str | None, seconds: float | None
) -> None:
    assert parse_retry_after(header) == seconds
    assert parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT") is None


def test_the_delay_after_a_given_try_doubles_up_to_the_cap_within_its_jitter() -> None:
    policy = Backoff(first_s=2.0, factor=2.0, cap_s=3600.0, jitter=(0.5, 1.0))
    rng = random.Random(7)
    for try_number, full in [(1, 2.0), (2, 4.0), (5, 32.0), (12, 3600.0), (5000, 3600.0)]:
        delay = policy.after_try(try_number, rng=rng)
        assert full * 0.5 <= delay <= full
    assert Backoff(first_s=2.0).after_try(3) == 8.0  # no jitter: exactly the doubling
