"""The rate search's rule and decisions, without a load test: the backlog trend, the next rate, the
live plan's rate changes, and which stage a failed step's evidence names."""

from __future__ import annotations

import random

import pytest

from generators.arrival import LivePlan
from loadtesting import rate_capacity as rc


def series(slope: float, noise: float, n: int = 20, seed: int = 1) -> tuple[list[float], list[float]]:
    rng = random.Random(seed)
    times = [i * 0.5 for i in range(n)]
    return times, [100 + slope * t + rng.uniform(-noise, noise) for t in times]


def test_a_steady_backlog_with_batch_noise_is_flat():
    assert rc.trend(*series(0.0, 30.0, n=40), tolerance=5.0).verdict == rc.FLAT


def test_a_backlog_growing_faster_than_the_tolerance_is_growing():
    assert rc.trend(*series(20.0, 5.0), tolerance=5.0).verdict == rc.GROWING


def test_noise_that_hides_the_trend_leaves_it_unclear_never_a_pass():
    t = rc.trend(*series(4.0, 200.0, n=8), tolerance=5.0)
    assert t.verdict == rc.UNCLEAR and t.half_width > 5.0


def sawtooth(growth: float, phase: float, seed: int, n: int = 40) -> tuple[list[float], list[float]]:
    """sent − stored of a pipeline flushing on a 5 s timer (5.3 s with the insert) at 100 events/s,
    sampled every second: a tooth of 500 events, and `growth` events/s left behind per second."""
    rng = random.Random(seed)
    times = [i + rng.uniform(0.0, 0.1) for i in range(n)]
    return times, [100 * ((t + phase) % 5.3) + growth * t + rng.randint(0, 20) for t in times]


@pytest.mark.parametrize("phase", [k * 0.53 for k in range(10)])
def test_a_batch_timer_sawtooth_that_keeps_up_is_flat_by_its_troughs(phase):
    t = rc.trend(*sawtooth(0.0, phase, seed=round(phase * 100)), tolerance=5.0, trough_sd=100.0 / 12 ** 0.5)
    assert t.verdict == rc.FLAT, t.text()


@pytest.mark.parametrize("phase", [k * 0.53 for k in range(10)])
def test_a_sawtooth_whose_troughs_rise_is_growing(phase):
    t = rc.trend(*sawtooth(15.0, phase, seed=round(phase * 100)), tolerance=5.0, trough_sd=100.0 / 12 ** 0.5)
    assert t.verdict == rc.GROWING, t.text()


def test_troughs_that_sampling_alone_could_line_up_are_not_growing():
    # celery, 2 workers, batch 1000, at 200/s (run 20261207-091228): the queue drained every ~5.5 s and
    # nothing was left between it and ClickHouse, but the three troughs of sent − stored were sampled
    # 0.6, 1.0 and 1.4 s after their inserts (samples and polls every 0.5 s): +13.4 ± 0.7/s by three
    # troughs' residuals, "growing" against 10/s.
    teeth = [244, 1044, 125, 1125, 199, 1199, 272, 1072]  # low, high, low, … at 4.5, 10.0, 15.5 s
    times, values = [i * 0.5 for i in range(40)], []
    for low, high, n in zip(teeth[::2], teeth[1::2], (9, 11, 11, 9), strict=True):
        values += [low + (high - low) * k / (n - 1) for k in range(n)]
    assert rc.trend(times, values, tolerance=10.0).verdict == rc.GROWING  # without the sampling's scatter
    t = rc.trend(times, values, tolerance=10.0, trough_sd=200 * (0.5 ** 2 / 6) ** 0.5)
    assert t.verdict == rc.UNCLEAR and t.half_width > 5.0, t.text()


def test_the_troughs_are_the_lows_after_each_drop():
    times = list(range(10))
    assert rc.troughs(times, [5, 0, 0, 3, 6, 1, 4, 4, 2, 9]) == ([2, 5, 8], [0, 1, 2])


def test_growth_shown_by_the_wider_estimate_still_fails():
    # Steady growth without teeth: the troughs (none, or a few of the noise) cannot hide it.
    times = [i * 0.5 for i in range(40)]
    values = [100 + 20 * t + (15 if i % 7 == 0 else 0) for i, t in enumerate(times)]
    assert rc.trend(times, values, tolerance=5.0).verdict == rc.GROWING


def test_an_unclear_backlog_is_measured_again_then_fails():
    step = rc.RateStep(target=100.0, e2e_p95_ms=500.0)
    unclear = {"sent − stored": rc.Trend(4.0, 9.0, 8, rc.UNCLEAR)}
    assert rc.judge(step, unclear, 30_000, final=False) is None
    assert rc.judge(step, unclear, 30_000, final=True) == rc.FAIL and "not shown flat" in step.why


def test_the_e2e_slo_and_failed_sends_fail_a_step_with_a_flat_backlog():
    flat = {"sent − stored": rc.Trend(0.0, 1.0, 16, rc.FLAT)}
    slow = rc.RateStep(target=100.0, e2e_p95_ms=9000.0)
    assert rc.judge(slow, flat, 5000, final=False) == rc.FAIL and "p95 9000 ms > SLO 5000 ms" in slow.why
    lost = rc.RateStep(target=100.0, e2e_p95_ms=100.0, failed=3)
    assert rc.judge(lost, flat, 5000, final=False) == rc.FAIL and "3 sends failed" in lost.why


def steps(*results: tuple[float, bool]) -> list[rc.RateStep]:
    return [rc.RateStep(target=r, verdict=rc.PASS if ok else rc.FAIL) for r, ok in results]


@pytest.mark.parametrize(("done", "add", "expected"), [
    ([], 0, 50), ([(50, True)], 0, 100), ([(50, True), (100, True)], 30, 130),
    ([(50, True), (100, False)], 0, 75), ([(50, True), (100, False), (75, True)], 0, 87.5),
    ([(50, True), (100, False), (75, True), (87.5, False)], 0, 81.25),  # 12.5 apart > 10 % of 75
])
def test_next_rate_climbs_then_bisects(done, add, expected):
    assert rc.next_rate(steps(*done), 50, add, 0, 5000) == expected


def test_next_rate_stops_within_the_resolution_and_at_the_ceiling():
    assert rc.next_rate(steps((50, True), (60, False)), 50, 0, 10, 5000) is None
    assert rc.next_rate(steps((50, True), (100, True)), 50, 0, 0, 100) is None
    assert rc.next_rate(steps((50, True)), 50, 0, 0, 80) == 80


def test_a_failing_first_step_halves_the_rate():
    assert rc.next_rate(steps((50, False)), 50, 0, 0, 5000) == 25


def test_a_live_plan_changes_rate_without_losing_or_doubling_an_instant():
    plan = LivePlan(10.0)
    it = plan.instants()
    first = [next(it) for _ in range(10)]  # 0.0 … 0.9 at 10/s
    plan.set_rate(100.0, at=1.0, ramp=0.0)
    after = [next(it) for _ in range(10)]
    assert first == pytest.approx([i / 10 for i in range(10)])
    assert after == pytest.approx([1.0 + i / 100 for i in range(10)])


def test_a_change_ahead_of_the_instants_handed_out_keeps_the_old_rate_until_it():
    plan = LivePlan(10.0)
    it = plan.instants()
    next(it)
    plan.set_rate(20.0, at=0.5, ramp=0.0)  # instants before 0.5 s keep 10/s
    assert [next(it) for _ in range(6)] == pytest.approx([0.1, 0.2, 0.3, 0.4, 0.5, 0.55])


def test_processes_share_a_live_plan_and_interleave_after_a_change():
    one = LivePlan(40.0)
    two = [LivePlan(40.0, process=i, processes=2) for i in range(2)]
    for p in (one, *two):
        p.set_rate(80.0, at=0.5, ramp=1.0)

    def take(p, n):
        it = p.instants()
        return [next(it) for _ in range(n)]
    merged = sorted(take(two[0], 50) + take(two[1], 50))
    assert merged == pytest.approx(take(one, 100))


def evidence(bus: str | None, e2e: str, e2e_slope: float = 5.0, bus_slope: float = 5.0, **kw) -> rc.RateStep:
    backlog = {"sent − stored": {"slope": e2e_slope, "ci": 0.5, "verdict": e2e}}
    if bus is not None:
        backlog["bus"] = {"slope": bus_slope, "ci": 0.5, "verdict": bus}
    return rc.RateStep(target=100.0, backlog=backlog, verdict=rc.FAIL, why="backlog growing", **kw)


def test_a_growing_bus_with_clickhouse_keeping_pace_names_the_consumers_or_celery():
    assert rc.attribute(evidence(rc.GROWING, rc.GROWING), rc.CONSUMERS)[0] == rc.CONSUMERS
    stage, why = rc.attribute(evidence(rc.GROWING, rc.GROWING), rc.CELERY)
    assert stage == rc.CELERY and "Celery queues grew" in why


def test_the_stage_after_the_bus_is_judged_by_its_own_trend_not_by_the_slopes_difference():
    # A consumer holding a batch makes sent − stored a sawtooth: its slope above the bus's is noise
    # when what lies between them is not shown growing.
    sawtooth = evidence(rc.GROWING, rc.GROWING, e2e_slope=8.1, bus_slope=5.1,
                        between={"slope": 3.0, "ci": 4.0, "verdict": rc.UNCLEAR})
    assert rc.attribute(sawtooth, rc.CONSUMERS)[0] == rc.CONSUMERS
    both = evidence(rc.GROWING, rc.GROWING, e2e_slope=40.0, bus_slope=5.0,
                    between={"slope": 35.0, "ci": 2.0, "verdict": rc.GROWING})
    stage, why = rc.attribute(both, rc.CONSUMERS)
    assert stage == rc.UNDETERMINED and "between the bus and ClickHouse grew too" in why


def test_a_flat_bus_with_sent_minus_stored_growing_names_the_clickhouse_insert_path():
    stage, why = rc.attribute(evidence(rc.FLAT, rc.GROWING, bus_slope=0.1,
                                       clickhouse={"delayed_inserts": 4, "rejected_inserts": 0}), rc.CONSUMERS)
    assert stage == rc.CLICKHOUSE and "delayed 4" in why


def test_ambiguous_evidence_is_not_determined_with_the_reason():
    stage, why = rc.attribute(evidence(None, rc.GROWING), rc.CONSUMERS)
    assert stage == rc.UNDETERMINED and "--monitor-backend" in why
    stage, why = rc.attribute(evidence(rc.GROWING, rc.GROWING, e2e_slope=40.0, bus_slope=5.0), rc.CONSUMERS)
    assert stage == rc.UNDETERMINED and "more than one stage" in why


def test_an_unknown_bus_lag_is_named_as_the_reason_it_is_not_determined():
    step = evidence(None, rc.GROWING)
    step.bus_unknown = "no consumer group reads stream dev-analytics"
    stage, why = rc.attribute(step, rc.CONSUMERS)
    assert stage == rc.UNDETERMINED and "lag was unknown (no consumer group reads stream dev-analytics)" in why


def test_drops_or_a_busy_generator_are_the_generators_limit():
    assert "dropped" in rc.generator_limit(rc.RateStep(target=100, dropped=7, start=0, end=10))
    starved = rc.RateStep(target=100, dropped=7, start=0, end=10, generator_cpu_max=15, host_cpu_max=100)
    assert "it waited for CPU" in rc.generator_limit(starved)
    assert "CPU" in rc.generator_limit(rc.RateStep(target=100, generator_cpu_max=97, start=0, end=10))
    short = rc.RateStep(target=100, planned=1000, sent=700, start=0, end=10)
    assert "sent 700 of 1000" in rc.generator_limit(short)
    assert rc.generator_limit(rc.RateStep(target=100, planned=1000, sent=990, start=0, end=10)) == ""


def settings(**over) -> rc.RateSearchSettings:
    base = {"start_rate": 50.0, "rate_step": 0.0, "rate_resolution": 0.0, "max_rate": 5000.0, "ramp_time": 3.0,
            "backlog_tolerance": 0.05, "slo_e2e_p95": 30_000.0, "drain_timeout": 60.0, "sample_interval": 1.0,
            "step_time": 20.0, "settle_time": 5.0, "time_limit": 600.0}
    return rc.RateSearchSettings(**{**base, **over})


def test_a_step_starts_only_when_its_longest_case_ends_within_the_time_limit():
    assert rc.step_worst_s(settings(), horizon=4) == 3 + 4 + 5 + 2 * 20 + 1
    assert rc.drain_allowed(left_s=100, next_step_s=60, drain_timeout=60) == 40  # the drain is cut short
    assert rc.drain_allowed(left_s=500, next_step_s=60, drain_timeout=60) == 60
    assert rc.drain_allowed(left_s=59, next_step_s=60, drain_timeout=60) is None  # the search stops


def test_the_time_left_bounds_the_bisection_and_the_climb():
    o = settings()
    # 50 passed, 100 failed: 10 % of 50 apart takes 4 bisections (25, 12.5, 6.25, 3.1), each at most a
    # failed step and a drain.
    assert rc.plan_left_s(steps((50, True), (100, False)), o, per_step=10) == 4 * (10 + 60)
    # Still climbing from 50 to 5000 by doubling: 7 more steps; the worst is failing at 3200, then 4
    # bisections below it (4 × 70 + 70 > 7 × 10).
    assert rc.plan_left_s(steps((50, True)), o, per_step=10) == 5 * 10 + 70 + 4 * 70
    assert rc.plan_left_s([rc.RateStep(target=50, verdict=rc.GENERATOR)], o, per_step=10) == 0


def test_a_failed_step_is_drained_below_its_own_rate():
    # (start rate, users, failed rate): the first step failing, a step below the start rate after it,
    # many users (make pipeline-capacity's 400: users / 10 s is 40/s).
    for start, users, failed in ((50, 20, 50), (50, 20, 12.5), (50, 400, 50), (50, 400, 6.25)):
        assert rc.drain_rate(start, users, failed) <= failed / 2, (start, users, failed)
    assert rc.drain_rate(50, 20, 50) == 12.5  # a quarter of the start rate when the users allow it
    assert rc.drain_rate(50, 200, 100) == 20  # no lower than the users' claims allow (200 users / 10 s)
