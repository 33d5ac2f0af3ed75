"""Capacity search over the arrival rate (events/s) for open-model generators: its options and
decisions, without Locust (testable on their own). The Locust side is `loadtesting.rate_capacity_shape`.

The tracking generator switches it on with ``--capacity-search``: instead of users, the search steps
the open model's rate. Each step ramps to its rate (--capacity-ramp-time), settles
(--capacity-settle-time), then is measured over a window (--capacity-step-time). While steps pass the
rate rises by --capacity-rate-step (0: doubles); after a failure it bisects between the best passing
and the lowest failing rate until they are --capacity-rate-resolution apart (0: 10 % of the passing rate).

The pass rule (docs/capacity.md says why):
- every backlog series of the window (sent − stored from the end-to-end check; the bus lag or Celery
  queues when --monitor-backend samples them) is *flat*: the 95 % confidence interval of its
  least-squares slope lies below the tolerance (--capacity-backlog-tolerance × the rate). A slope
  whose interval lies above it is *growing* (fail); an interval straddling it is unclear, and the
  window is measured once more, then counts as a failure ("not shown to keep up");
- the end-to-end p95 of the window is at most --capacity-slo-e2e-p95;
- nothing lost: no send failed.
A step whose planned events were not all offered (drops: no free user; the generator's CPU at
≥ 90 %; or fewer events sent than planned) is the generator's limit, not the pipeline's: the search
stops there and claims no capacity at or above that rate.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from loadtesting import capacity
from plumbing.options import non_negative_float, positive_float, positive_fraction, require

GENERATOR_CPU_LIMIT = 90.0  # % of one core: a Locust process this busy delays its own instants
GROWING, FLAT, UNCLEAR = "growing", "flat", "unclear"
PASS, FAIL, GENERATOR = "pass", "fail", "generator"
CONSUMERS, CELERY, CLICKHOUSE, HOST, UNDETERMINED = ("bus consumers", "celery workers", "clickhouse insert path",
                                                     "host resources", "not determined")

# Two-sided 95 % Student t quantiles by degrees of freedom (1.96 beyond 30).
_T95 = [12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228, 2.201, 2.179, 2.160, 2.145,
        2.131, 2.120, 2.110, 2.101, 2.093, 2.086, 2.080, 2.074, 2.069, 2.064, 2.060, 2.056, 2.052, 2.048,
        2.045, 2.042]


def add_arguments(parser) -> None:
    g = parser.add_argument_group("capacity search over the arrival rate (tracking, kafka)")
    g.add_argument("--capacity-start-rate", type=positive_float, default=50.0, env_var="LOCUST_CAPACITY_START_RATE",
                   help="events/s of the first step (default %(default)g)")
    g.add_argument("--capacity-rate-step", type=non_negative_float, default=0.0, env_var="LOCUST_CAPACITY_RATE_STEP",
                   help="events/s added per step while steps pass (default %(default)g: double the rate)")
    g.add_argument("--capacity-rate-resolution", type=non_negative_float, default=0.0,
                   env_var="LOCUST_CAPACITY_RATE_RESOLUTION",
                   help="stop honing in when passing and failing rates are this close, events/s "
                        "(default %(default)g: 10 %% of the passing rate)")
    g.add_argument("--capacity-max-rate", type=positive_float, default=5000.0, env_var="LOCUST_CAPACITY_MAX_RATE",
                   help="never offer more than this many events/s (default %(default)g)")
    g.add_argument("--capacity-ramp-time", type=non_negative_float, default=3.0, env_var="LOCUST_CAPACITY_RAMP_TIME",
                   help="seconds over which a step's rate is reached linearly (default %(default)g)")
    g.add_argument("--capacity-backlog-tolerance", type=positive_fraction, default=0.05,
                   env_var="LOCUST_CAPACITY_BACKLOG_TOLERANCE",
                   help="a backlog growing slower than this fraction of the rate counts as flat (default %(default)g)")
    g.add_argument("--capacity-slo-e2e-p95", type=positive_float, default=30_000.0,
                   env_var="LOCUST_CAPACITY_SLO_E2E_P95",
                   help="a step fails when its end-to-end p95 (ms) is above this (default %(default)g)")
    g.add_argument("--capacity-drain-timeout", type=non_negative_float, default=60.0,
                   env_var="LOCUST_CAPACITY_DRAIN_TIMEOUT",
                   help="after a failed step, seconds to wait at the lowest rate for its backlog to drain "
                        "before the next step (default %(default)g)")
    g.add_argument("--capacity-time-limit", type=positive_float, default=600.0, env_var="LOCUST_CAPACITY_TIME_LIMIT",
                   help="seconds the whole search may take: a step (and the drain before it) starts only when "
                        "its longest case ends within this; the search then stops with the capacity between "
                        "the rates it found (default %(default)g)")
    g.add_argument("--capacity-sample-interval", type=positive_float, default=0.5,
                   env_var="LOCUST_CAPACITY_SAMPLE_INTERVAL",
                   help="seconds between the search's backlog samples (default %(default)g)")


def start_rate(o) -> float:
    """Events/s of the search's first step (--capacity-start-rate): the open model's rate to start from."""
    return o.capacity_start_rate


@dataclass(frozen=True)
class RateSearchSettings:
    """The rate search's settings: the --capacity-* options, checked once here (each value by its
    argparse type; what involves two values by `from_options`)."""

    start_rate: float
    rate_step: float  # 0: double the rate
    rate_resolution: float  # 0: 10 % of the passing rate
    max_rate: float
    ramp_time: float
    backlog_tolerance: float  # a fraction of the rate
    slo_e2e_p95: float  # ms
    drain_timeout: float
    sample_interval: float
    step_time: float
    settle_time: float
    time_limit: float = 600.0  # s, the whole search

    @classmethod
    def from_options(cls, o) -> RateSearchSettings:
        """The settings of `o`; OptionError (one line) when they do not fit together."""
        step_time, settle_time = capacity.step_time(o, rate=True), capacity.settle_time(o, rate=True)
        require(o.capacity_max_rate >= o.capacity_start_rate,
                f"--capacity-max-rate {o.capacity_max_rate:g}: expected at least --capacity-start-rate "
                f"({o.capacity_start_rate:g})")
        require(step_time >= 4 * o.capacity_sample_interval,
                f"--capacity-step-time {step_time:g}: expected at least 4 samples (--capacity-sample-interval "
                f"{o.capacity_sample_interval:g})")
        settings = cls(o.capacity_start_rate, o.capacity_rate_step, o.capacity_rate_resolution, o.capacity_max_rate,
                       o.capacity_ramp_time, o.capacity_backlog_tolerance, o.capacity_slo_e2e_p95,
                       o.capacity_drain_timeout, o.capacity_sample_interval, step_time, settle_time,
                       o.capacity_time_limit)
        longest = step_worst_s(settings, 0.0)
        require(o.capacity_time_limit >= longest,
                f"--capacity-time-limit {o.capacity_time_limit:g}: expected seconds >= one step's longest case, "
                f"{longest:g} (ramp + settle + twice the step time)")
        return settings

    def rule(self) -> dict:
        """The pass rule's settings, as capacity.json keeps them."""
        return {"backlog_tolerance": self.backlog_tolerance, "slo_e2e_p95_ms": self.slo_e2e_p95,
                "step_time_s": self.step_time, "settle_time_s": self.settle_time,
                "ramp_time_s": self.ramp_time, "sample_interval_s": self.sample_interval}


# -- the backlog rule --------------------------------------------------------------------------------
@dataclass(frozen=True)
class Trend:
    slope: float  # backlog change per second (events/s)
    half_width: float  # of its 95 % confidence interval
    samples: int
    verdict: str  # FLAT, GROWING or UNCLEAR
    basis: str = "samples"  # "samples": every sample; "troughs": the lowest after each drop (a sawtooth)
    troughs: int = 0  # the troughs the estimate used (basis "troughs")

    def text(self) -> str:
        of = f"{self.troughs} troughs of {self.samples} samples" if self.basis == "troughs" else f"{self.samples} samples"
        return f"{self.slope:+.1f} ± {self.half_width:.1f}/s over {of}"

    def as_dict(self) -> dict:
        d = {"slope": self.slope, "ci": self.half_width, "samples": self.samples, "verdict": self.verdict,
             "basis": self.basis}
        return d | {"troughs": self.troughs} if self.basis == "troughs" else d


def slope_ci(times: list[float], values: list[float]) -> tuple[float, float]:
    """Least-squares slope of values over times and the half-width of its 95 % confidence interval."""
    n = len(times)
    if n < 3:
        return 0.0, math.inf
    mt, mv = sum(times) / n, sum(values) / n
    sxx = sum((t - mt) ** 2 for t in times)
    if sxx <= 0:
        return 0.0, math.inf
    slope = sum((t - mt) * (v - mv) for t, v in zip(times, values, strict=True)) / sxx
    resid = sum((v - mv - slope * (t - mt)) ** 2 for t, v in zip(times, values, strict=True))
    se = math.sqrt(resid / (n - 2) / sxx)
    t95 = _T95[n - 3] if n - 2 <= len(_T95) else 1.96
    return slope, t95 * se


def troughs(times: list[float], values: list[float]) -> tuple[list[float], list[float]]:
    """The series' interior local minima: each sample lower than or equal to the one before and lower
    than the one after (the last of a low plateau) — after each flush of a batching stage, its low."""
    idx = [i for i in range(1, len(values) - 1) if values[i] <= values[i - 1] and values[i] < values[i + 1]]
    return [times[i] for i in idx], [values[i] for i in idx]


def _verdict(slope: float, half: float, tolerance: float) -> str:
    if slope + half <= tolerance:
        return FLAT
    if slope - half > tolerance:
        return GROWING
    return UNCLEAR


def trend(times: list[float], values: list[float], tolerance: float, trough_sd: float = 0.0) -> Trend:
    """FLAT when the slope's whole interval is at most `tolerance`, GROWING when all of it is above.

    Two estimates of the slope: over every sample, and over the troughs (the low after each drop). A
    batching stage (a batch or a timer) makes the backlog a sawtooth whose teeth widen every sample's
    interval, while its troughs — what is left after each flush — lie on a line with little scatter; a
    backlog without teeth has its samples' estimate narrower. The verdict is the narrower estimate's;
    growth shown by either fails (a pass needs the precise estimate flat and no evidence of growth).

    `trough_sd` is the scatter a trough has from sampling alone (events, a standard deviation): it
    sits rate × u after its flush's true low, u uniform over the sample interval (and the poll behind
    the end-to-end count). Three or four troughs can line up by chance, and then their residuals say
    they are precise; the troughs' interval is never narrower than that known scatter allows.
    """
    slope, half = slope_ci(times, values)
    full = Trend(round(slope, 3), round(half, 3) if math.isfinite(half) else half, len(times),
                 _verdict(slope, half, tolerance))
    tt, tv = troughs(times, values)
    t_slope, t_half = slope_ci(tt, tv)
    if trough_sd > 0 and len(tt) >= 3:
        mt = sum(tt) / len(tt)
        t_half = max(t_half, 1.96 * trough_sd / math.sqrt(sum((t - mt) ** 2 for t in tt)))
    low = Trend(round(t_slope, 3), round(t_half, 3) if math.isfinite(t_half) else t_half, len(times),
                _verdict(t_slope, t_half, tolerance), "troughs", len(tt))
    chosen, other = (low, full) if t_half < half else (full, low)
    if chosen.verdict != GROWING and other.verdict == GROWING:
        return other
    return chosen


# -- a step ------------------------------------------------------------------------------------------
@dataclass
class RateStep:
    target: float  # events/s planned
    start: float = 0.0  # epoch s of the measured window
    end: float = 0.0
    planned: int = 0  # events whose instant fell in the window
    sent: int = 0  # sent without error in the window (Locust's stats)
    dropped: int = 0  # instants dropped (no free user) in the window
    failed: int = 0  # sends that failed in the window
    offered_per_s: float = 0.0
    stored_per_s: float | None = None  # stored in the xAPI table during the window
    backlog: dict = field(default_factory=dict)  # series name -> {start, end, slope, ci, verdict}
    clickhouse_lag_s: float | None = None  # the xAPI table's lag (now − newest event) at the window's end
    e2e_p50_ms: float | None = None
    e2e_p95_ms: float | None = None  # event time → first seen in the xAPI table, events stored in the window
    e2e_p95_from_planned_ms: float | None = None  # an upper bound: p97.5 E2E + p97.5 planned → sent
    send_p95_from_planned_ms: float | None = None
    generator_cpu_max: float | None = None  # %, the busiest Locust process
    host_cpu_max: float | None = None  # %, the generator's machine
    clickhouse: dict = field(default_factory=dict)  # system.events / metrics / parts over the window
    measured_twice: bool = False
    verdict: str = ""  # PASS, FAIL or GENERATOR
    why: str = ""
    backlog_before: int | None = None  # sent − stored when the step started (a former step's leftover)
    # Events past the bus but not yet stored ((sent − stored) − bus, per sample): its own trend says
    # whether the stage after the bus fell behind too; it attributes, it does not judge the step.
    between: dict = field(default_factory=dict)  # {start, end, slope, ci, samples, verdict}
    drain_s: float | None = None  # after a failed step: the time its backlog took to drain
    bus_before: int | None = None  # the bus backlog when the step started
    lost_before: int = 0  # events the bus had lost unread (trimmed) when the step started
    leftover: int = 0  # events a timed-out drain left before this step (its e2e p95 is then not judged)
    sent_per_s_reported: float | None = None  # on a master: sent/s from the workers' reports (coarse)
    series: list = field(default_factory=list)  # the window's samples: [s from its start, sent − stored, bus]
    bus_unknown: str = ""  # why the bus's lag was unknown in the window (e.g. no consumer group reads it)

    @property
    def ok(self) -> bool:
        return self.verdict == PASS


def judge(step: RateStep, trends: dict[str, Trend], slo_p95_ms: float, final: bool) -> str | None:
    """Set the step's verdict and reason; None (no verdict) when a backlog is unclear and not `final`."""
    reasons = []
    growing = [f"{name} backlog growing ({t.text()})" for name, t in trends.items() if t.verdict == GROWING]
    unclear = [f"{name} backlog not shown flat ({t.text()})" for name, t in trends.items() if t.verdict == UNCLEAR]
    if step.failed:
        reasons.append(f"{step.failed} sends failed")
    reasons += growing
    if step.e2e_p95_ms is not None and step.e2e_p95_ms > slo_p95_ms:
        reasons.append(f"end-to-end p95 {step.e2e_p95_ms:.0f} ms > SLO {slo_p95_ms:.0f} ms")
    if not reasons and unclear and not final:
        return None
    reasons += unclear
    if not trends and step.e2e_p95_ms is None:
        reasons.append("nothing measured the pipeline (no end-to-end check, no --monitor-backend)")
    step.verdict, step.why = (FAIL, "; ".join(reasons)) if reasons else (PASS, "")
    return step.verdict


def generator_limit(step: RateStep, report_lag_s: float = 0.0, check_sent: bool = True) -> str:
    """Why the generator could not offer the step's rate ('' when it did)."""
    if step.dropped:
        slow = (f"; sends took up to {step.send_p95_from_planned_ms:.0f} ms (p95) from their planned instant"
                if step.send_p95_from_planned_ms else "")
        starved = ""
        if step.host_cpu_max is not None and step.host_cpu_max >= GENERATOR_CPU_LIMIT and \
                (step.generator_cpu_max or 0) < GENERATOR_CPU_LIMIT:
            starved = (f"; its machine was at {step.host_cpu_max:.0f} % CPU with the generator at "
                       f"{step.generator_cpu_max or 0:.0f} %: it waited for CPU (give it its own cores or machine)")
        return f"{step.dropped} planned events dropped (no free user{slow}){starved}"
    if step.generator_cpu_max is not None and step.generator_cpu_max >= GENERATOR_CPU_LIMIT:
        return f"a generator process at {step.generator_cpu_max:.0f} % CPU"
    window = max(step.end - step.start, 1e-9)
    # Sent counts on a master come with the workers' reports: allow for that much of the window.
    short = max(0.05, 2 * report_lag_s / window)
    if check_sent and step.planned and step.sent + step.failed < (1 - short) * step.planned:
        return f"sent {step.sent + step.failed} of {step.planned} planned events"
    return ""


def next_rate(steps: list[RateStep], start: float, add: float, resolution: float, max_rate: float) -> float | None:
    """The next step's rate, or None when the search is over (pure, like capacity.decide)."""
    if not steps:
        return start
    lo = max((s.target for s in steps if s.ok), default=0.0)
    above = [s.target for s in steps if not s.ok and s.target > lo]
    if not above:
        top = max(s.target for s in steps)
        if top >= max_rate:
            return None
        return min(top + add if add > 0 else top * 2, max_rate)
    hi = min(above)
    res = resolution if resolution > 0 else max(0.1 * lo, 1.0) if lo else max(0.1 * hi, 1.0)
    if hi - lo <= res:
        return None
    if lo == 0:
        return hi / 2  # the first step failed: halve until one passes
    return round((lo + hi) / 2, 3)


# -- the time it takes ------------------------------------------------------------------------------
def step_worst_s(cfg: RateSearchSettings, horizon: float, report_lag: float = 0.0) -> float:
    """The longest a step can take: its ramp, the users' instants claimed at the old rate (`horizon`),
    the settling, the window measured twice (unclear the first time), a sample and a report's delay."""
    return cfg.ramp_time + horizon + cfg.settle_time + 2 * cfg.step_time + cfg.sample_interval + report_lag


def plan_left_s(steps: list[RateStep], cfg: RateSearchSettings, per_step: float) -> float:
    """An upper bound of the plan's remaining time after `steps` (the time limit aside): the climb to
    --capacity-max-rate failing at its worst point, then the bisection to the resolution, each failing
    step followed by a drain of at most --capacity-drain-timeout."""
    if steps and steps[-1].verdict == GENERATOR:
        return 0.0
    lo = max((s.target for s in steps if s.ok), default=0.0)
    above = [s.target for s in steps if not s.ok and s.target > lo]
    per_failed = per_step + cfg.drain_timeout

    def bisections(low: float, high: float) -> int:
        res = cfg.rate_resolution or max(0.1 * low, 1.0)
        n, gap = 0, high - low
        while gap > res:
            gap, n = gap / 2, n + 1
        return n

    if above:
        return bisections(lo, min(above)) * per_failed
    rates = [] if steps else [cfg.start_rate]
    top = max((s.target for s in steps), default=cfg.start_rate)
    while top < cfg.max_rate:
        top = min(top + cfg.rate_step if cfg.rate_step > 0 else top * 2, cfg.max_rate)
        rates.append(top)
    worst = len(rates) * per_step  # every step passes
    for i, rate in enumerate(rates):  # or the climb fails at `rate`, then bisects below it
        worst = max(worst, i * per_step + per_failed + bisections(rates[i - 1] if i else lo, rate) * per_failed)
    return worst


def drain_allowed(left_s: float, next_step_s: float, drain_timeout: float) -> float | None:
    """Seconds a drain may take before the next step with `left_s` of the time limit left, or None
    when the next step's longest case no longer fits (the search stops)."""
    if next_step_s > left_s:
        return None
    return max(min(drain_timeout, left_s - next_step_s), 0.0)


# -- what limits it ----------------------------------------------------------------------------------
def attribute(step: RateStep, bus_kind: str | None) -> tuple[str, str]:
    """(stage, evidence) for a failed step, from its measurements; UNDETERMINED with the reason when
    the evidence does not single one out. `bus_kind` is CONSUMERS or CELERY for the backend's backlog."""
    if step.verdict == GENERATOR:
        behind = [f"{name} backlog {b['slope']:+.1f}/s" for name, b in step.backlog.items() if b["verdict"] == GROWING]
        return "generator", step.why + (f"; the pipeline fell behind as well ({', '.join(behind)}), not judged: "
                                        "the rate offered was not the one planned" if behind else "")
    if step.host_cpu_max is not None and step.host_cpu_max >= GENERATOR_CPU_LIMIT:
        host = (f"; the generator's machine was at {step.host_cpu_max:.0f} % CPU (stages running on it, "
                "e.g. a local reference pipeline, share that limit)")
    else:
        host = ""
    e2e = step.backlog.get("sent − stored")
    bus = step.backlog.get("bus")
    ch = step.clickhouse
    ch_note = ""
    if ch.get("delayed_inserts") or ch.get("rejected_inserts"):
        ch_note = (f"; ClickHouse delayed {ch.get('delayed_inserts', 0)} and rejected "
                   f"{ch.get('rejected_inserts', 0)} inserts (too many parts)")
    if bus is not None and bus["verdict"] == GROWING:
        # What left the bus reached ClickHouse: what lies between them did not grow. Judged by that
        # series' own trend and interval when both were sampled together (a consumer's batch in hand
        # makes a sawtooth the two slopes' difference alone would read as growth); else by the slopes.
        between = step.between.get("verdict")
        kept_pace = (between != GROWING if between is not None
                     else e2e["slope"] - bus["slope"] <= e2e_tolerance(step))
        if e2e is None or kept_pace:
            stage = bus_kind or CONSUMERS
            what = {CELERY: "Celery queues", CLICKHOUSE: "the sink's lag (received − sent)"}.get(stage, "bus lag")
            evidence = f"{what} grew {bus['slope']:+.1f}/s"
            if e2e is not None:
                evidence += f" while ClickHouse kept pace with what left it (sent − stored grew {e2e['slope']:+.1f}/s)"
            return stage, evidence + host
        grew = (f"what lay between the bus and ClickHouse grew too ({step.between['slope']:+.1f} ± "
                f"{step.between['ci']:.1f}/s)" if step.between else f"sent − stored faster ({e2e['slope']:+.1f}/s)")
        return UNDETERMINED, (f"the bus backlog grew {bus['slope']:+.1f}/s and {grew}: more than one stage "
                              "fell behind")
    if e2e is not None and e2e["verdict"] == GROWING:
        if bus is not None and bus["verdict"] == FLAT:
            return (CLICKHOUSE,
                    f"bus backlog flat ({bus['slope']:+.1f}/s) while sent − stored grew {e2e['slope']:+.1f}/s: "
                    f"events left the bus but did not reach the xAPI table" + ch_note + host)
        if bus is None:
            unsampled = (f"the bus's lag was unknown ({step.bus_unknown})" if step.bus_unknown
                         else "no bus or queue was sampled (add --monitor-backend)")
            return UNDETERMINED, (f"sent − stored grew {e2e['slope']:+.1f}/s but {unsampled} to tell the consumers "
                                  "from ClickHouse" + ch_note)
    if host:
        return HOST, f"no stage's backlog was shown to grow ({step.why})" + host
    if step.failed:
        return UNDETERMINED, f"{step.failed} sends failed: the entry point refused events ({step.why})"
    if step.e2e_p95_ms is not None and "p95" in step.why:
        return UNDETERMINED, f"end-to-end p95 {step.e2e_p95_ms:.0f} ms above the SLO with no backlog growing"
    return UNDETERMINED, f"no stage's backlog was shown to grow ({step.why})"


def e2e_tolerance(step: RateStep) -> float:
    return max(step.backlog.get("sent − stored", {}).get("ci", 0.0), 0.05 * step.target)


# -- the result --------------------------------------------------------------------------------------
def progress_line(step: RateStep, left_s: float | None, unit: str = "events") -> str:
    verdict = {PASS: "ok", FAIL: "FAILED", GENERATOR: "GENERATOR LIMIT"}.get(step.verdict, step.verdict)
    stored = f", stored {step.stored_per_s:.1f}/s" if step.stored_per_s is not None else ""
    p95 = f", e2e p95 {step.e2e_p95_ms:.0f} ms" if step.e2e_p95_ms is not None else ""
    left = f"; at most {left_s / 60:.1f} min left" if left_s is not None else ""
    return (f"capacity search: {step.target:g} {unit}/s → offered {step.offered_per_s:.1f}/s{stored}{p95}: "
            f"{verdict}{f' ({step.why})' if step.why else ''}{left}")


def summary_text(result: dict) -> str:
    unit = result.get("unit", "events")
    lines = ["", f"Capacity search ({unit}/s)",
             f"{'target':>9} {'offered':>9} {'stored':>9} {'backlog/s':>10} {'e2e p95':>9} {'drops':>6}  result"]
    for s in result["steps"]:
        b = s["backlog"].get("sent − stored") or s["backlog"].get("bus") or {}
        stored = f"{s['stored_per_s']:.1f}" if s["stored_per_s"] is not None else "-"
        p95 = f"{s['e2e_p95_ms']:.0f}" if s["e2e_p95_ms"] is not None else "-"
        slope = f"{b['slope']:+.1f}" if b else "-"
        lines.append(f"{s['target']:>9g} {s['offered_per_s']:>9.1f} {stored:>9} {slope:>10} {p95:>9} "
                     f"{s['dropped']:>6}  " + ("ok" if s["verdict"] == PASS else f"{s['verdict']}: {s['why']}"))
    cap = result["sustained_per_second"]
    if result.get("generator_limited_at") is not None:
        why = next(s["why"] for s in result["steps"] if s["verdict"] == GENERATOR)
        lines.append(f"the generator was the limit at {result['generator_limited_at']:g} {unit}/s "
                     f"({why}): raise -u/--users, --processes or workers; "
                     + (f"the pipeline sustained at least {cap:g} {unit}/s" if cap else "no capacity claimed"))
    elif result.get("stopped"):
        during = result.get("stopped_during")
        lines.append("stopped before the search ended"
                     + (f" (while measuring {during:g} {unit}/s)" if during is not None else "") + ": a partial result, "
                     + (f"sustained at least {cap:g} {unit}/s" if cap else "no step passed"))
    elif result.get("stopped_by_time_limit") is not None:
        above = result.get("lowest_failing_above")
        lines.append(f"sustained: {cap:g} {unit}/s; stopped by --capacity-time-limit {result['time_limit_s']:g} s "
                     f"before trying {result['stopped_by_time_limit']:g} {unit}/s"
                     + (f": the capacity lies between {cap:g} and {above:g} {unit}/s" if above else ""))
    elif result["first_failing"] is None:
        lines.append(f"sustained {cap:g} {unit}/s: no step failed up to --capacity-max-rate")
    else:
        lines.append(f"sustained: {cap:g} {unit}/s (resolution {result['resolution']:g}); fails at "
                     f"{result['first_failing']['target']:g} {unit}/s: {result['first_failing']['why']}")
    b = result.get("bottleneck")
    if b:
        lines.append(f"bottleneck: {b['stage']}: {b['evidence']}")
    lines.append(f"search took {result['duration_s']:.0f} s")
    return "\n".join(lines)


DRAIN_HORIZON_S = 10.0  # a drain's rate keeps the users' claimed instants within this many seconds


def drain_rate(start_rate: float, users: int, failed_rate: float) -> float:
    """The rate held after a failed step until its backlog drains: well below any passing rate (a quarter
    of the start rate), but no lower than the users can hold claims for within DRAIN_HORIZON_S (users /
    rate: how long the next rate waits behind them); and at most half the failed step's own rate — a
    step below those (the search halving after a failed first step, or many users) would otherwise be
    "drained" at a rate it could not take, and its backlog would never drain."""
    return min(max(start_rate / 4, users / DRAIN_HORIZON_S, 1.0), start_rate, failed_rate / 2)
