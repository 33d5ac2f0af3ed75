"""The comparison's method on made-up interval rows: percentiles as the report merges them, the verdict
rules, capacity brackets, figures with one value per run, drops and lag."""

from __future__ import annotations

import random

import numpy as np

from loadtesting import compare_data, compare_stats
from loadtesting.report.data import RunData
from plumbing import histogram


def _rows(latencies: list[list[int]], name: str = "/x", rtype: str = "GET", failures: int = 0) -> list[dict]:
    """One interval per list of response times (ms), as the monitor writes them, Aggregated included."""
    rows = []
    for i, times in enumerate(latencies):
        hist: dict[int, int] = {}
        for t in times:
            hist[t] = hist.get(t, 0) + 1
        buckets, counts = histogram.arrays(hist)
        for rt, nm in ((rtype, name), ("", "Aggregated")):
            rows.append({"time_ms": 1000 * (i + 1), "interval_s": 1.0, "timing": "service", "request_type": rt,
                         "name": nm, "requests": len(times), "failures": failures, "max_ms": max(times),
                         "buckets": buckets, "counts": counts})
    return rows


def _run(rows: list[dict], **data) -> compare_data.Run:
    return compare_data.build_run("r", RunData("r", "csv", **data), rows)


def _intervals(rng: random.Random, shift: int = 0, n: int = 20) -> list[list[int]]:
    return [[rng.randint(20, 60) + shift for _ in range(50)] for _ in range(n)]


def test_the_runs_own_percentile_is_the_reports_merge_of_its_intervals():
    rows = _rows(_intervals(random.Random(1)))
    run = _run(rows)
    merged = histogram.merge((r["buckets"], r["counts"]) for r in rows if r["name"] == "Aggregated")
    top = max(r["max_ms"] for r in rows)
    w = np.ones((1, len(run.seconds)))
    for p in (0.5, 0.95, 0.99):
        assert compare_stats.percentile(run.series[compare_data.AGGREGATED], w, p)[0] == histogram.percentile(merged, p, top)


def test_a_constant_slowdown_is_worse_by_that_much():
    rng = random.Random(2)
    base = _run(_rows(_intervals(rng)))
    cand = _run(_rows(_intervals(rng, shift=30)))
    d = compare_stats.compare(base, cand).figure("p95")
    assert d.verdict == compare_stats.WORSE and 25 <= d.delta <= 35 and d.ci[0] > 0


def test_a_significant_change_below_the_practical_size_is_not_worse():
    fig = compare_stats.FIGURES["p95"]
    assert compare_stats.verdict(fig, 200.0, 30.0, (20.0, 40.0)) == compare_stats.SMALL  # 15 %: under 20 %
    assert compare_stats.verdict(fig, 200.0, 50.0, (40.0, 60.0)) == compare_stats.WORSE
    assert compare_stats.verdict(fig, 200.0, 50.0, (-1.0, 60.0)) == compare_stats.SAME
    assert compare_stats.verdict(fig, 4.0, 1.0, (1.0, 1.0)) == compare_stats.WORSE  # one bucket (1 ms) is the least
    assert compare_stats.verdict(compare_stats.FIGURES["rps"], 100.0, -15.0, (-20.0, -10.0)) == compare_stats.WORSE


def test_too_few_intervals_are_not_tested():
    rng = random.Random(3)
    d = compare_stats.compare(_run(_rows(_intervals(rng, n=3))), _run(_rows(_intervals(rng, n=3)))).figure("p95")
    assert d.ci is None and d.verdict == compare_stats.UNTESTED and "intervals" in d.why


def _capacity(ok: int, fail: int | None) -> dict:
    return {"steps": [{}], "max_sustainable_users": ok, "first_failing_users": fail, "resolution": 2}


def test_capacity_is_worse_when_the_candidate_failed_at_a_load_the_baseline_sustained():
    rows = _rows(_intervals(random.Random(4)))
    d = compare_stats.compare(_run(rows, capacity=_capacity(40, 42)), _run(rows, capacity=_capacity(20, 22)))
    cap = d.figure("capacity")
    assert cap.verdict == compare_stats.WORSE and cap.delta == -20 and cap.ci == (-22, -18)
    same = compare_stats.compare(_run(rows, capacity=_capacity(40, 44)), _run(rows, capacity=_capacity(42, 44)))
    assert same.figure("capacity").verdict == compare_stats.SAME


def test_a_rate_capacity_search_is_compared_in_events_per_second():
    rows = _rows(_intervals(random.Random(11)))

    def rate(sustained: float, failing: float | None, generator: float | None = None) -> dict:
        return {"steps": [{}], "unit": "events", "sustained_per_second": sustained, "resolution": 10,
                "first_failing": {"target": failing, "why": "backlog grew"} if failing else None,
                "generator_limited_at": generator}

    worse = compare_stats.compare(_run(rows, capacity=rate(400, 440)), _run(rows, capacity=rate(200, 220))).figure("capacity")
    assert (worse.verdict, worse.figure.unit, worse.delta) == (compare_stats.WORSE, "events/s", -200)
    # The generator, not the pipeline, stopped the candidate's search: no upper bound, so not worse.
    unknown = compare_stats.compare(_run(rows, capacity=rate(400, 440)), _run(rows, capacity=rate(200, 400, 200)))
    assert unknown.figure("capacity").verdict == compare_stats.SAME
    mixed = compare_stats.compare(_run(rows, capacity=rate(400, 440)), _run(rows, capacity=_capacity(20, 22)))
    assert mixed.figure("capacity").verdict == compare_stats.UNTESTED


def test_a_backlog_peak_is_shown_but_not_tested():
    rows = _rows(_intervals(random.Random(5)))
    c = compare_stats.compare(_run(rows, lag={"backlog (events)": [(1, 5.0), (2, 90.0)]}),
                              _run(rows, lag={"backlog (events)": [(1, 500.0)]}))
    d = c.figure("backlog")
    assert (d.base, d.cand, d.ci, d.verdict) == (90.0, 500.0, None, compare_stats.UNTESTED)


def test_dropped_iterations_of_a_run_without_drops_count_as_zero():
    rng = random.Random(6)
    dropped = _rows(_intervals(rng)) + [
        {"time_ms": 1000 * (i + 1), "interval_s": 1.0, "timing": "service", "request_type": "DROPPED",
         "name": "arrivals", "requests": 20, "failures": 0, "max_ms": 0, "buckets": [], "counts": []}
        for i in range(20)]
    d = compare_stats.compare(_run(_rows(_intervals(rng))), _run(dropped)).figure("dropped")
    assert d.base == 0 and d.cand == 20 and d.verdict == compare_stats.WORSE


def test_clickhouse_lag_compares_the_mean_of_its_samples():
    rows = _rows(_intervals(random.Random(7)))
    rng = random.Random(8)
    base = [(t, rng.uniform(0.5, 1.5)) for t in range(30)]
    cand = [(t, rng.uniform(4.5, 5.5)) for t in range(30)]
    d = compare_stats.compare(_run(rows, lag={"clickhouse lag_seconds": base}),
                              _run(rows, lag={"clickhouse lag_seconds": cand})).figure("lag")
    assert d.verdict == compare_stats.WORSE and 3.5 < d.ci[0] <= d.delta <= d.ci[1] < 4.5


def test_the_same_inputs_give_the_same_intervals():
    rng = random.Random(9)
    base, cand = _run(_rows(_intervals(rng))), _run(_rows(_intervals(rng)))
    assert compare_stats.compare(base, cand).figure("p95").ci == compare_stats.compare(base, cand).figure("p95").ci


def test_a_long_run_is_merged_into_at_most_max_units_with_the_same_figures():
    rows = _rows(_intervals(random.Random(10), n=3 * compare_data.MAX_UNITS + 7))
    run = _run(rows, lag={"clickhouse lag_seconds": [(t, t % 7) for t in range(2 * compare_data.MAX_UNITS + 3)]})
    assert len(run.seconds) <= compare_data.MAX_UNITS and len(run.lag_units) <= compare_data.MAX_UNITS
    assert run.seconds.sum() == 3 * compare_data.MAX_UNITS + 7
    merged = histogram.merge((r["buckets"], r["counts"]) for r in rows if r["name"] == "Aggregated")
    top = max(r["max_ms"] for r in rows)
    c = compare_stats.compare(run, run, replicates=50)
    assert c.figure("p95").base == histogram.percentile(merged, 0.95, top)
    assert c.figure("lag").base == sum(t % 7 for t in range(2 * compare_data.MAX_UNITS + 3)) / (2 * compare_data.MAX_UNITS + 3)


def test_end_to_end_p95_merges_every_e2e_series():
    rng = random.Random(12)
    base = _rows(_intervals(rng)) + _rows(_intervals(rng, shift=1000), name="topic", rtype="E2E")
    cand = _rows(_intervals(rng)) + _rows(_intervals(rng, shift=1500), name="topic", rtype="E2E")
    c = compare_stats.compare(_run(base), _run(cand))
    e2e = c.figure("e2e_p95")
    assert e2e.verdict == compare_stats.WORSE and 400 <= e2e.delta <= 600
    assert any(d.request == "E2E topic" and d.figure.key == "p95" for d in c.requests)


def test_skip_first_leaves_out_the_ramp_up_intervals():
    rng = random.Random(13)
    warm = [[2000] * 50] + _intervals(rng, n=10)  # a first interval 2 s slow, then steady
    run = _run(_rows(warm))
    steady = compare_data.build_run("r", RunData("r", "csv"), _rows(warm), skip_first=1)
    assert len(steady.seconds) == 10 and steady.skipped == (1, 0)
    assert len(compare_data.build_run("r", RunData("r", "csv"), _rows(warm), skip_first=1, skip_last=2).seconds) == 8
    c = compare_stats.compare(run, steady)
    assert c.figure("p95").base == 2000 and c.figure("p95").cand <= 60
