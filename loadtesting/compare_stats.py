"""The statistics of ``python -m loadtesting.compare``: each figure of two runs, the delta, its
moving-block bootstrap confidence interval and the verdict (the method: docs/compare.md)."""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import numpy as np

from loadtesting.compare_data import AGGREGATED, Run, Series

CONFIDENCE = 0.95
REPLICATES = 2000
SEED = 20261206  # fixed: the same two runs always give the same intervals
MIN_INTERVALS = 5  # fewer intervals of a figure in a run: no test
NOT_LATENCY = ("DROPPED",)  # request types whose rows count iterations, not timed requests

BETTER, WORSE, SAME, SMALL = "better", "worse", "no significant change", "no practical change"
UNTESTED = "not tested"


@dataclass(frozen=True)
class Figure:
    key: str  # its name in --fail-on
    label: str
    unit: str
    lower_is_better: bool
    rel: float  # practical size: relative to the baseline ...
    floor: float  # ... and at least this much, in `unit`
    tested: bool = True


# Practical sizes: two runs of one endpoint at the same time on 2 busy cores differed by 10.4 % at
# p50 with an interval excluding 0 (docs/compare.md), so 10 % would call a machine's noise a change.
FIGURES = {f.key: f for f in [
    Figure("p50", "p50", "ms", True, 0.20, 1.0),
    Figure("p95", "p95", "ms", True, 0.20, 1.0),
    Figure("p99", "p99", "ms", True, 0.20, 1.0),
    Figure("rps", "requests/s", "/s", False, 0.10, 0.0),
    Figure("failures", "failure ratio", "%", True, 0.0, 0.5),  # 0.5 percentage points
    Figure("dropped", "dropped iterations/s", "/s", True, 0.20, 0.1),
    Figure("backlog", "backlog peak", "events", True, 0.0, 0.0, tested=False),
    Figure("lag", "ClickHouse lag, mean of samples", "s", True, 0.20, 0.5),
    Figure("e2e_p95", "end-to-end p95", "ms", True, 0.20, 1.0),
    Figure("capacity", "capacity (max sustainable users)", "users", False, 0.0, 0.0),
]}
PER_REQUEST = ("p50", "p95", "p99", "rps", "failures")


# -- figures of a set of resampled intervals ------------------------------------------------------
def _weights(n: int, replicates: int, rng: np.random.Generator) -> np.ndarray:
    """Moving-block bootstrap: per replicate, how often each of n intervals was drawn (row 0: the run)."""
    w = np.zeros((replicates + 1, n))
    w[0] = 1
    if n == 0:
        return w
    block = max(1, round(n ** (1 / 3)))
    blocks = math.ceil(n / block)
    starts = rng.integers(0, n - block + 1, size=(replicates, blocks))
    idx = (starts[:, :, None] + np.arange(block)).reshape(replicates, -1)[:, :n]
    flat = (np.arange(replicates)[:, None] * n + idx).ravel()  # one bincount for all replicates
    w[1:] = np.bincount(flat, minlength=replicates * n).reshape(replicates, n)
    return w


def percentile(s: Series, w: np.ndarray, p: float) -> np.ndarray:
    """Locust's percentile of the merged histogram of each weighting's intervals, at most their maximum."""
    if not len(s.buckets):
        return np.full(len(w), np.nan)
    hist = w @ s.counts
    cum = hist.cumsum(axis=1)
    total = cum[:, -1]
    k = np.floor(total * p)  # Locust: int(total * p); total >= 0
    first = (cum > k[:, None]).argmax(axis=1)
    top = np.where(w > 0, s.max_ms, -np.inf).max(axis=1)
    out = np.minimum(s.buckets[first], top)
    return np.where(total > 0, out, np.nan)


def _ratio(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(den > 0, num / np.where(den > 0, den, 1), np.nan)


def series_figure(key: str, s: Series, seconds: np.ndarray, w: np.ndarray) -> np.ndarray:
    if key in ("p50", "p95", "p99", "e2e_p95"):
        return percentile(s, w, int(key[-2:]) / 100)
    if key in ("rps", "dropped"):
        return _ratio(w @ s.requests, w @ seconds)
    if key == "failures":
        return 100 * _ratio(w @ s.failures, w @ s.requests)
    raise KeyError(key)


# -- comparison -----------------------------------------------------------------------------------
@dataclass
class Delta:
    figure: Figure
    request: str  # "" for the run's key figures
    base: float | None
    cand: float | None
    ci: tuple[float, float] | None = None
    verdict: str = UNTESTED
    why: str = ""  # for an untested figure

    @property
    def delta(self) -> float | None:
        return None if self.base is None or self.cand is None else self.cand - self.base

    @property
    def relative(self) -> float | None:
        d = self.delta
        return d / abs(self.base) if d is not None and self.base else None

    def significantly_worse(self) -> bool:
        if self.ci is None:
            return False
        lo, hi = self.ci
        return lo > 0 if self.figure.lower_is_better else hi < 0


def bucket_width(ms: float) -> float:
    """Locust's response-time rounding at `ms` (locust.stats: whole ms below 100, then 2 significant digits)."""
    return 1.0 if ms < 100 else 10.0 if ms < 1000 else 100.0 if ms < 10000 else 1000.0


def practical(fig: Figure, base: float) -> float:
    """The smallest change of `fig` from `base` that counts."""
    size = max(fig.rel * abs(base), fig.floor)
    if fig.unit == "ms":
        size = max(size, bucket_width(abs(base)))
    return size


def verdict(fig: Figure, base: float, delta: float, ci: tuple[float, float]) -> str:
    lo, hi = ci
    if lo <= 0 <= hi:
        return SAME
    if abs(delta) < practical(fig, base):
        return SMALL
    return WORSE if (delta > 0) == fig.lower_is_better else BETTER


def _tested(fig: Figure, request: str, base: np.ndarray, cand: np.ndarray, why_short: str) -> Delta:
    b, c = float(base[0]), float(cand[0])
    if math.isnan(b) or math.isnan(c):
        return Delta(fig, request, None if math.isnan(b) else b, None if math.isnan(c) else c,
                     why="not measured in both runs")
    if why_short:
        return Delta(fig, request, b, c, why=why_short)
    d = cand[1:] - base[1:]
    d = d[~np.isnan(d)]
    if not len(d):
        return Delta(fig, request, b, c, why="no bootstrap replicate had the figure in both runs")
    tail = (1 - CONFIDENCE) / 2 * 100
    lo, hi = np.percentile(d, [tail, 100 - tail])
    ci = (float(lo), float(hi))
    return Delta(fig, request, b, c, ci, verdict(fig, b, c - b, ci))


def _zeros(n: int) -> Series:
    return Series(np.zeros(n), np.zeros(n), np.zeros(n), np.zeros(0), np.zeros((n, 0)))


def _short(sb: Series | None, sc: Series | None) -> str:
    least = min(sb.active() if sb else 0, sc.active() if sc else 0)
    return f"fewer than {MIN_INTERVALS} intervals with requests in a run" if least < MIN_INTERVALS else ""


def bracket(capacity: dict | None) -> tuple[float, float | None, str] | None:
    """(highest load sustained, lowest load failing or None, unit) of a capacity search's result:
    the user search's (capacity.json's max_sustainable_users) or the rate search's (sustained_per_second).
    A rate search stopped by the generator has no failing load of the system."""
    if not capacity or not capacity.get("steps"):
        return None
    if capacity.get("max_sustainable_users") is not None:
        return capacity["max_sustainable_users"], capacity.get("first_failing_users"), "users"
    if capacity.get("sustained_per_second") is not None:
        first = capacity.get("first_failing") or {}
        fail = None if capacity.get("generator_limited_at") is not None else first.get("target")
        return capacity["sustained_per_second"], fail, f"{capacity.get('unit', 'events')}/s"
    return None


def _capacity(base: Run, cand: Run) -> Delta | None:
    fig = FIGURES["capacity"]
    bb, bc = bracket(base.data.capacity), bracket(cand.data.capacity)
    if bb is None or bc is None:
        return None
    (ok_b, fail_b, unit), (ok_c, fail_c, unit_c) = bb, bc
    fig = replace(fig, unit=unit, label="capacity (max sustainable)")
    if unit != unit_c:
        return Delta(fig, "", None, None, why=f"searches over {unit} and {unit_c}")
    # The true limits lie in [ok, first failing): the delta of two such brackets.
    lo = ok_c - fail_b if fail_b is not None else -math.inf
    hi = fail_c - ok_b if fail_c is not None else math.inf
    d = Delta(fig, "", ok_b, ok_c, (lo, hi))
    if fail_c is not None and fail_c <= ok_b:
        d.verdict = WORSE
    elif fail_b is not None and fail_b <= ok_c:
        d.verdict = BETTER
    else:
        d.verdict = SAME
    return d


@dataclass
class Comparison:
    base: Run
    cand: Run
    key: list[Delta]
    requests: list[Delta]

    def figure(self, key: str) -> Delta | None:
        return next((d for d in self.key if d.figure.key == key), None)


def compare(base: Run, cand: Run, replicates: int = REPLICATES, seed: int = SEED) -> Comparison:
    rng = np.random.default_rng(seed)
    wb, wc = _weights(len(base.seconds), replicates, rng), _weights(len(cand.seconds), replicates, rng)

    def interval_delta(fig_key: str, skey: tuple[str, str], request: str) -> Delta:
        sb, sc = base.series.get(skey), cand.series.get(skey)
        if fig_key == "dropped":  # a run without DROPPED rows dropped none: 0 in each of its intervals
            sb, sc = sb or _zeros(len(base.seconds)), sc or _zeros(len(cand.seconds))
            short = "" if min(len(base.seconds), len(cand.seconds)) >= MIN_INTERVALS else \
                f"fewer than {MIN_INTERVALS} intervals in a run"
        else:
            short = _short(sb, sc)
        nan = np.full(replicates + 1, np.nan)
        vb = series_figure(fig_key, sb, base.seconds, wb) if sb else nan
        vc = series_figure(fig_key, sc, cand.seconds, wc) if sc else nan
        return _tested(FIGURES[fig_key], request, vb, vc, short)

    key = [interval_delta(k, AGGREGATED, "") for k in PER_REQUEST]
    if ("DROPPED", "*") in base.series or ("DROPPED", "*") in cand.series:
        key.append(interval_delta("dropped", ("DROPPED", "*"), ""))
    backlog_b, backlog_c = base.data.lag.get("backlog (events)"), cand.data.lag.get("backlog (events)")
    if backlog_b or backlog_c:
        key.append(Delta(FIGURES["backlog"], "", max((v for _, v in backlog_b), default=None) if backlog_b else None,
                         max((v for _, v in backlog_c), default=None) if backlog_c else None,
                         why="a peak: one value per run"))
    if len(base.lag) or len(cand.lag):
        key.append(_lag(base, cand, replicates, rng))
    if ("E2E", "*") in base.series or ("E2E", "*") in cand.series:
        key.append(interval_delta("e2e_p95", ("E2E", "*"), ""))
    cap = _capacity(base, cand)
    if cap:
        key.append(cap)
    names = sorted({k for k in [*base.series, *cand.series] if k != AGGREGATED and k[1] != "*"
                    and k[0] not in NOT_LATENCY}, key=lambda k: (k[0], k[1]))
    requests = [interval_delta(f, k, f"{k[0]} {k[1]}".strip()) for k in names for f in PER_REQUEST]
    return Comparison(base, cand, key, requests)


def _lag(base: Run, cand: Run, replicates: int, rng: np.random.Generator) -> Delta:
    fig = FIGURES["lag"]

    def means(units: np.ndarray) -> np.ndarray:
        if not len(units):
            return np.full(replicates + 1, np.nan)
        w = _weights(len(units), replicates, rng)
        return (w @ units[:, 0]) / (w @ units[:, 1])

    short = "" if min(len(base.lag), len(cand.lag)) >= MIN_INTERVALS else \
        f"fewer than {MIN_INTERVALS} lag samples in a run"
    return _tested(fig, "", means(base.lag_units), means(cand.lag_units), short)
