"""The arrival plan: instants fixed by the target rate (evenly spaced or Poisson), stages, exact splits."""

from __future__ import annotations

import itertools
import math

import pytest

from generators.arrival import EVEN, POISSON, Plan, RateProfile, Stage, parse_stages


def gaps_of(ts: list[float]) -> list[float]:
    return [b - a for a, b in itertools.pairwise(ts)]


def instants(rate: float, limit: int, **kw) -> list[float]:
    return list(Plan(RateProfile(rate), limit=limit, **kw).instants())


def test_an_even_plan_has_exactly_its_instants_one_period_apart():
    ts = instants(200, 1000)
    assert len(ts) == 1000 and ts[0] == 0.0
    gaps = gaps_of(ts)
    assert max(abs(g - 1 / 200) for g in gaps) < 1e-9
    assert Plan(RateProfile(200), limit=1000).duration(1000) == pytest.approx(5.0)


def ks_exponential(gaps: list[float], mean: float) -> float:
    """Kolmogorov-Smirnov distance between the gaps and Exp(mean)."""
    xs = sorted(gaps)
    n = len(xs)
    d = 0.0
    for i, x in enumerate(xs):
        cdf = 1 - math.exp(-x / mean)
        d = max(d, cdf - i / n, (i + 1) / n - cdf)
    return d


def test_poisson_gaps_are_exponential_with_the_target_mean():
    ts = instants(500, 20_000, arrival=POISSON, seed=42)
    gaps = gaps_of(ts)
    assert sum(gaps) / len(gaps) == pytest.approx(1 / 500, rel=0.03)
    # 1.63/sqrt(n) is the 1 % critical value of the KS test; the seed makes the run reproducible.
    assert ks_exponential(gaps, 1 / 500) < 1.63 / math.sqrt(len(gaps))
    # Not evenly spaced: an even plan would fail the same test by far.
    even = instants(500, 2000)
    assert ks_exponential(gaps_of(even), 1 / 500) > 0.5


def test_poisson_counts_per_second_have_variance_equal_to_mean():
    ts = instants(100, 30_000, arrival=POISSON, seed=7)
    per_second = [0] * int(ts[-1])
    for t in ts:
        if int(t) < len(per_second):
            per_second[int(t)] += 1
    mean = sum(per_second) / len(per_second)
    var = sum((c - mean) ** 2 for c in per_second) / (len(per_second) - 1)
    assert mean == pytest.approx(100, rel=0.03)
    assert var / mean == pytest.approx(1.0, abs=0.25)  # dispersion index of a Poisson process


def test_a_fixed_seed_gives_the_same_poisson_plan():
    assert instants(50, 100, arrival=POISSON, seed=3) == instants(50, 100, arrival=POISSON, seed=3)
    assert instants(50, 100, arrival=POISSON, seed=3) != instants(50, 100, arrival=POISSON, seed=4)


def test_stages_ramp_linearly_and_hold_the_last_rate():
    profile = RateProfile(0, parse_stages("100:30s,1000:60s"))
    ts = list(Plan(profile, limit=200_000).instants())
    # k6 ramping-arrival-rate: 0 -> 100/s over 30 s (1,500 iterations), 100 -> 1,000/s over 60 s
    # (33,000), then 1,000/s for ever.
    in_stage = [sum(1 for t in ts if lo <= t < hi) for lo, hi in ((0, 30), (30, 90), (90, 100))]
    assert in_stage == [1500, 33_000, 10_000]
    assert profile.rate(15) == pytest.approx(50) and profile.rate(60) == pytest.approx(550)
    assert profile.rate(1e6) == 1000
    # Every instant sits where the integral of the rate reaches its index.
    assert all(profile.count(ts[i]) == pytest.approx(i, abs=1e-6) for i in range(0, 40_000, 997))


def test_a_zero_second_stage_is_a_step_and_a_final_zero_rate_ends_the_plan():
    profile = RateProfile(0, parse_stages("50:0s,50:10s,0:0s"))
    ts = list(Plan(profile).instants())
    assert len(ts) == 500 and ts[-1] < 10


def test_the_start_rate_is_where_the_stages_begin():
    profile = RateProfile(100, [Stage(300, 10)])  # 100 -> 300/s over 10 s: 2,000 iterations
    assert profile.count(10) == pytest.approx(2000)
    assert len([t for t in Plan(profile, limit=10_000).instants() if t < 10]) == 2000


@pytest.mark.parametrize("processes", [2, 3, 7])
def test_processes_split_the_plan_exactly_and_interleave(processes):
    whole = instants(300, 3001)
    shares = [list(Plan(RateProfile(300), process=k, processes=processes,
                        limit=3001 // processes + (1 if k < 3001 % processes else 0)).instants())
              for k in range(processes)]
    assert sum(len(s) for s in shares) == 3001
    merged = sorted(t for s in shares for t in s)
    assert max(abs(a - b) for a, b in zip(merged, whole, strict=True)) < 1e-9


@pytest.mark.parametrize("text", ["100", "100:", "x:30s", "100:30x", "100:30s,,", "-1:3s"])
def test_bad_stages_name_the_value_and_the_expected_form(text):
    with pytest.raises(ValueError, match=r"expected RATE:DURATION"):
        parse_stages(text)


def test_an_unknown_arrival_process_is_refused():
    with pytest.raises(ValueError, match=f"expected {EVEN} or {POISSON}"):
        Plan(RateProfile(1), arrival="bursty")
