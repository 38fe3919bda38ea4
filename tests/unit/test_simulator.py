"""Trace loading (thin/stretch) and the idle-policy simulator and its CLI."""

from __future__ import annotations

import itertools
import json
import math
import os
import random
import subprocess
import sys
import time
from pathlib import Path

import pytest

from shared.money.idle import POLICY_NAMES, IdlePolicyConfig, PolicyName
from shared.sim.simulator import JSON_KEYS, ServiceModel, compare, gap_game, main, simulate
from shared.sim.trace import TraceRequest, load_trace, parse_timestamp_ns, write_trace

REPO = Path(__file__).resolve().parents[2]
AZURE = REPO.parent / "shared" / "traces" / "AzureLLMInferenceTrace_code_2023.csv"
needs_azure = pytest.mark.skipif(not AZURE.is_file(), reason=f"shared trace not present at {AZURE}")
SECONDS = ServiceModel(tokens_per_s=1.0, prefill_tokens_per_s=0.0)


def cfg(policy: PolicyName = "break-even", **kw: float) -> IdlePolicyConfig:
    return IdlePolicyConfig.model_validate({"policy": policy, "cold_start_s": 100.0, "price_per_hour": 1.0, **kw})


def synthetic(n: int, seed: int = 0) -> list[TraceRequest]:
    """Bursty arrivals: mostly minutes apart, sometimes seconds apart."""
    rng = random.Random(seed)
    t, reqs = 0.0, []
    for _ in range(n):
        reqs.append(TraceRequest(round(t, 4), rng.randint(10, 4000), rng.randint(1, 400)))
        t += rng.expovariate(1 / 240) if rng.random() < 0.6 else rng.expovariate(1 / 3)
    return reqs


@pytest.fixture
def small_trace(tmp_path: Path) -> Path:
    path = tmp_path / "small.csv"
    write_trace(path, synthetic(300))
    return path


# ------------------------------------------------------------------------------------------------ trace


def test_parse_timestamp_keeps_all_seven_digits() -> None:
    a = parse_timestamp_ns("2023-11-16 18:17:03.9799600")
    b = parse_timestamp_ns("2023-11-16 18:17:04.0319601")
    assert b - a == 52_000_100
    assert parse_timestamp_ns("2023-11-17 00:00:00") - parse_timestamp_ns("2023-11-16 23:59:59.9") == 100_000_000
    for bad in ("2023-11-16", "2023-13-01 00:00:00.0", "2023-11-16 24:00:00.0", "yesterday"):
        with pytest.raises(ValueError):
            parse_timestamp_ns(bad)


@needs_azure
def test_shared_trace_loads_unthinned() -> None:
    reqs = load_trace(AZURE)
    assert len(reqs) == 8_819
    assert reqs[0] == TraceRequest(0.0, 4808, 10)
    assert reqs[1].offset_s == pytest.approx(0.052, abs=1e-9)  # 04.0319600 - 03.9799600
    assert (reqs[-1].context_tokens, reqs[-1].generated_tokens) == (549, 173)  # the line without a newline
    assert reqs[-1].offset_s == pytest.approx(57 * 60 + 15.9480560, abs=1e-6)  # 19:14:19.928016 - 18:17:03.97996
    assert all(a.offset_s <= b.offset_s for a, b in itertools.pairwise(reqs))


@needs_azure
def test_shared_trace_thin_and_stretch() -> None:
    full = load_trace(AZURE)
    thinned = load_trace(AZURE, thin=0.1, seed=3)
    assert abs(len(thinned) - 882) < 5 * math.sqrt(8_819 * 0.1 * 0.9)
    assert thinned == load_trace(AZURE, thin=0.1, seed=3)  # seeded
    assert thinned != load_trace(AZURE, thin=0.1, seed=4)
    assert thinned[0].offset_s == 0.0
    stretched = load_trace(AZURE, thin=0.1, stretch=30, seed=3)
    assert [r.offset_s for r in stretched] == pytest.approx([30 * r.offset_s for r in thinned], rel=1e-12)
    # kept = the rows whose draw from random.Random(seed) fell below thin, offsets from the first kept one
    rng = random.Random(3)
    kept = [full[i] for i in range(len(full)) if rng.random() < 0.1]
    assert [astuple(r) for r in kept] == [astuple(r) for r in thinned]
    assert [r.offset_s for r in thinned] == pytest.approx([r.offset_s - kept[0].offset_s for r in kept], abs=1e-9)
    # for one seed a smaller probability keeps a subset
    smaller = load_trace(AZURE, thin=0.03, seed=3)
    rng = random.Random(3)
    subset = [full[i] for i in range(len(full)) if rng.random() < 0.03]
    assert [astuple(r) for r in smaller] == [astuple(r) for r in subset]
    assert 0 < len(smaller) < len(thinned)


def astuple(r: TraceRequest) -> tuple[int, int]:
    return (r.context_tokens, r.generated_tokens)


def test_generated_trace_round_trips(tmp_path: Path) -> None:
    reqs = [TraceRequest(0.0, 5, 6), TraceRequest(0.1234567, 7, 8), TraceRequest(86_400.5, 9, 10)]
    path = tmp_path / "t.csv"
    write_trace(path, reqs)
    text = path.read_text()
    assert not text.endswith("\n")
    assert text.splitlines()[2].startswith("2023-11-16 18:00:00.1234567,")
    assert load_trace(path) == reqs
    assert load_trace(path, stretch=2) == [
        TraceRequest(2 * r.offset_s, r.context_tokens, r.generated_tokens) for r in reqs
    ]


def test_unsorted_and_blank_lines_are_handled(tmp_path: Path) -> None:
    path = tmp_path / "t.csv"
    path.write_text(
        "\ufeffTIMESTAMP,ContextTokens,GeneratedTokens\r\n"
        "2023-01-01 00:00:10.5,1,2\r\n\r\n"
        "2023-01-01 00:00:00.25,3,4\r\n"
    )
    assert load_trace(path) == [TraceRequest(0.0, 3, 4), TraceRequest(10.25, 1, 2)]


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("", "empty"),
        ("a,b,c\n", "lacks"),
        ("TIMESTAMP,ContextTokens,GeneratedTokens\n2023-01-01 00:00:00.0,1\n", ":2:"),
        ("TIMESTAMP,ContextTokens,GeneratedTokens\n2023-01-01 00:00:00.0,x,1\n", ":2:"),
        ("TIMESTAMP,ContextTokens,GeneratedTokens\nnot a time,1,1\n", ":2:"),
    ],
)
def test_malformed_traces_raise(tmp_path: Path, content: str, message: str) -> None:
    path = tmp_path / "bad.csv"
    path.write_text(content)
    with pytest.raises(ValueError, match=message):
        load_trace(path)


def test_bad_thin_or_stretch(small_trace: Path) -> None:
    for thin, stretch in ((0.0, 1.0), (1.5, 1.0), (1.0, 0.0), (1.0, math.inf), (math.nan, 1.0)):
        with pytest.raises(ValueError):
            load_trace(small_trace, thin=thin, stretch=stretch)


# -------------------------------------------------------------------------------------------- simulator


def test_hand_computed_scenario() -> None:
    """C = 100 s, B = 100 s (w = 0), jobs of 10 s at 0, 50 and 400.

    Warm schedule: 0-10, 50-60 (gap 40), 400-410 (gap 340). Break-even: boot 0-100, job 0 100-110, job 1
    queued 110-120, idle at 120 until the stop at 220, job 2 restarts the box at 400: boot to 500, served
    500-510, idles to 610. Billed 220 + 210 = 430 s; reference 100 + 30 + 40 + 100 = 270 s.
    """
    reqs = [TraceRequest(0.0, 0, 10), TraceRequest(50.0, 0, 10), TraceRequest(400.0, 0, 10)]
    res = simulate(reqs, cfg(), service=SECONDS)
    assert res.billed_gpu_hours * 3600 == pytest.approx(430.0)
    assert res.optimum_gpu_hours * 3600 == pytest.approx(270.0)
    assert res.cost_ratio == pytest.approx(430 / 270)
    assert res.cold_starts == 2
    assert (res.delayed_fraction, res.delayed_jobs) == (1.0, 3)
    assert (res.p50_wait_s, res.p95_wait_s, res.max_wait_s) == (100.0, 100.0, 100.0)
    assert res.mean_wait_s == pytest.approx(260 / 3)
    assert res.prewarm_gpu_hours == res.optimum_gpu_hours
    # valuing waiting at $2/h against a $1/h GPU: B = 100 (1 + 2) = 300 s, so job 2 (gap 280 on the box)
    # is caught warm
    paid = simulate(reqs, cfg(wait_value_per_hour=2.0), service=SECONDS)
    assert paid.cold_starts == 1
    assert paid.billed_gpu_hours * 3600 == pytest.approx(410.0 + 300.0)  # up 0-410, tail 300
    assert paid.wait_cost_usd * 3600 == pytest.approx(2 * (100.0 + 60.0))  # $2/h for 160 job-seconds
    assert paid.cost_usd * 3600 == pytest.approx(710.0 + 320.0)
    # reference: B for the first start + 30 busy + 40 + min(340, 300)
    assert paid.optimum_cost_usd * 3600 == pytest.approx(300 + 30 + 40 + 300)
    assert paid.cost_ratio == pytest.approx(1030 / 670)


def test_immediate_and_fixed_on_the_small_scenario() -> None:
    reqs = [TraceRequest(0.0, 0, 10), TraceRequest(50.0, 0, 10), TraceRequest(400.0, 0, 10)]
    imm = simulate(reqs, cfg("immediate"), service=SECONDS)
    assert imm.billed_gpu_hours * 3600 == pytest.approx(120.0 + 110.0)
    fixed = simulate(reqs, cfg("fixed", fixed_keep_warm_s=300.0), service=SECONDS)
    assert fixed.cold_starts == 1
    assert fixed.billed_gpu_hours * 3600 == pytest.approx(410.0 + 300.0)


def test_service_model() -> None:
    req = TraceRequest(0.0, 4000, 100)
    assert ServiceModel().service_s(req) == pytest.approx(100 / 50 + 4000 / 4000)
    assert ServiceModel(tokens_per_s=25, prefill_tokens_per_s=0).service_s(req) == pytest.approx(4.0)
    with pytest.raises(ValueError):
        ServiceModel(tokens_per_s=0)


def test_simulator_is_deterministic_for_a_seed() -> None:
    reqs = synthetic(2_000)
    for name in POLICY_NAMES:
        a = simulate(reqs, cfg(name), seed=11)
        assert a == simulate(reqs, cfg(name), seed=11)
    r1 = simulate(reqs, cfg("randomized"), seed=1)
    r2 = simulate(reqs, cfg("randomized"), seed=2)
    assert r1.billed_gpu_hours != r2.billed_gpu_hours


def test_empty_and_single_job_traces() -> None:
    assert simulate([], cfg()).jobs == 0
    one = simulate([TraceRequest(5.0, 0, 10)], cfg(), service=SECONDS)
    assert (one.cold_starts, one.delayed_fraction, one.max_wait_s) == (1, 1.0, 100.0)
    assert one.billed_gpu_hours * 3600 == pytest.approx(100 + 10 + 100)


def test_unsorted_requests_are_rejected() -> None:
    with pytest.raises(ValueError, match="sorted"):
        simulate([TraceRequest(5.0, 0, 1), TraceRequest(1.0, 0, 1)], cfg())


def test_gap_game_matches_the_formula() -> None:
    from shared.money.idle import make_policy

    online, offline = gap_game(make_policy(cfg("fixed", fixed_keep_warm_s=30.0)), [10.0, 50.0, 500.0])
    assert online == pytest.approx(10 + (30 + 100) + (30 + 100))
    assert offline == pytest.approx(10 + 50 + 100)


def test_100k_jobs_run_fast() -> None:
    reqs = synthetic(100_000, seed=5)
    for name in POLICY_NAMES:
        t0 = time.perf_counter()
        res = simulate(reqs, cfg(name, wait_value_per_hour=0.5))
        elapsed = time.perf_counter() - t0
        assert res.jobs == 100_000
        assert elapsed < 10.0, f"{name}: {elapsed:.2f} s for 100k jobs"


@needs_azure
def test_compare_on_the_shared_trace() -> None:
    reqs = load_trace(AZURE, thin=0.02, stretch=30, seed=0)
    results = {r.policy: r for r in compare(reqs, cfg(cold_start_s=120.0, price_per_hour=0.5))}
    assert list(results) == list(POLICY_NAMES)
    assert results["break-even"].cost_ratio <= 2.0  # w = 0: holds on any trace
    assert results["immediate"].cost_ratio <= 1.0  # w = 0: batching behind cold starts is free
    assert results["immediate"].delayed_fraction == 1.0
    assert results["fixed"].delayed_fraction < results["immediate"].delayed_fraction


# -------------------------------------------------------------------------------------------------- CLI


def test_cli_json_has_the_keys(small_trace: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--trace", str(small_trace), "--policy", "adaptive", "--cold-start", "60", "--json"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 1
    row = json.loads(lines[0])
    assert set(JSON_KEYS) <= set(row)
    assert list(row)[: len(JSON_KEYS)] == list(JSON_KEYS)
    assert row["policy"] == "adaptive"
    assert row["cold_start_s"] == 60.0
    assert isinstance(row["cold_starts"], int)


def test_cli_compare_json_one_line_per_policy(small_trace: Path, capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["--trace", str(small_trace), "--thin", "0.5", "--stretch", "2", "--seed", "4", "--compare", "--json"]
    assert main([*argv, "--wait-value", "1", "--price", "2"]) == 0
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [r["policy"] for r in rows] == list(POLICY_NAMES)
    for r in rows:
        assert set(JSON_KEYS) <= set(r)
        assert (r["thin"], r["stretch"], r["seed"]) == (0.5, 2.0, 4)
        assert r["horizon_s"] == pytest.approx(120 * 1.5)
    assert main([*argv, "--wait-value", "1", "--price", "2"]) == 0
    assert [json.loads(line) for line in capsys.readouterr().out.splitlines()] == rows  # deterministic


def test_cli_compare_table(small_trace: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--trace", str(small_trace), "--compare", "--cold-start", "120", "--price", "0.5"]) == 0
    out = capsys.readouterr().out
    lines = out.splitlines()
    assert "300 jobs" in lines[0]
    assert "B=120.0 s" in lines[1]
    header = next(i for i, line in enumerate(lines) if line.startswith("policy"))
    for name, line in zip(POLICY_NAMES, lines[header + 2 :], strict=True):
        assert line.split()[0] == name
    widths = {len(line) for line in lines[header:]}
    assert len(widths) == 1  # aligned


def test_cli_single_policy_text(small_trace: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--trace", str(small_trace), "--policy", "fixed", "--fixed-keep-warm", "60"]) == 0
    out = capsys.readouterr().out
    assert "policy" in out
    assert "fixed" in out
    assert "cost ratio" in out


def test_cli_errors(tmp_path: Path, small_trace: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--trace", str(tmp_path / "missing.csv")]) == 1
    assert "error" in capsys.readouterr().err
    assert main(["--trace", str(small_trace), "--thin", "0"]) == 1
    assert main(["--trace", str(small_trace), "--price", "-1"]) == 1
    assert main(["--trace", str(small_trace), "--policy", "never"]) == 2
    assert main([]) == 2
    assert main(["--help"]) == 0


def test_python_dash_m_works(small_trace: Path) -> None:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.run(
        [sys.executable, "-m", "shared.sim.simulator", "--trace", str(small_trace), "--json"],
        capture_output=True,
        text=True,
        env=env,
        cwd=REPO,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["policy"] == "break-even"
