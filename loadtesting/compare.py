"""``python -m loadtesting.compare BASELINE CANDIDATE``: is the candidate run better or worse than the baseline?

BASELINE and CANDIDATE are run ids (read from ClickHouse, else from ``results/<run-id>/``) or run
folders. Both runs are compared per request name and on the run's key figures: p50/p95/p99 of
the merged interval histograms, requests/s, failure ratio, dropped iterations, backlog peak,
ClickHouse lag, end-to-end p95 and capacity (when both runs searched). Each figure gets the
delta, a 95 % confidence interval of the delta and a verdict; the method is in docs/compare.md:

- Interval figures (percentiles, rates, ratios) come from the monitor's per-interval rows, each
  holding the interval's latency histogram. A moving-block bootstrap resamples each run's
  intervals (blocks of consecutive intervals, so drift and autocorrelation stay in), merges the
  resampled histograms and recomputes the figure exactly as the report does (Locust's percentile
  rule, never a mean of percentiles); the delta's 2.5th and 97.5th bootstrap percentiles bound it.
- "worse" or "better" needs both: the interval excludes 0 (significance) and the change is at
  least the figure's practical size (relative and absolute, e.g. 20 % and one histogram bucket for
  latency). A significant change smaller than that is "no practical change"; else "no
  significant change". A figure with fewer than MIN_INTERVALS intervals in a run is not tested.
- Capacity: each search brackets its limit (highest step served, first step failing); "worse"
  when the candidate failed at a load the baseline sustained. Backlog peak is one value per run
  (a maximum, which a bootstrap cannot bound): shown, not tested.

``--skip-first S`` / ``--skip-last S`` leave out each run's ramp-up and stop (the steady state only).
``--fail-on p95:+10%,rps:-5%`` gates CI: exit 1 when a gated figure is significantly worse and its
change is beyond the tolerance (N% relative, or N in the figure's unit). Exit 2: bad input.
"""

from __future__ import annotations

import argparse
import json
import math
import re
import sys
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from loadtesting.report import charts
from loadtesting.report import data as report_data
from loadtesting.report.findings import fmt

CONFIDENCE = 0.95
REPLICATES = 2000
SEED = 20261206  # fixed: the same two runs always give the same intervals
MIN_INTERVALS = 5  # fewer intervals of a figure in a run: no test
MAX_UNITS = 500  # a longer run's neighbouring intervals are merged into this many
AGGREGATED = ("", "Aggregated")
NOT_LATENCY = ("DROPPED",)  # request types whose rows count iterations, not timed requests

BETTER, WORSE, SAME, SMALL = "better", "worse", "no significant change", "no practical change"
UNTESTED = "not tested"


class CompareError(RuntimeError):
    """Bad input: one line for the user."""


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


# -- a run's intervals as arrays --------------------------------------------------------------------
@dataclass
class Series:
    """One request name's interval rows on its run's interval grid (zeros where it had none)."""

    requests: np.ndarray
    failures: np.ndarray
    max_ms: np.ndarray
    buckets: np.ndarray  # ascending
    counts: np.ndarray  # intervals x buckets

    def active(self) -> int:
        return int((self.requests > 0).sum())


@dataclass
class Run:
    ref: str
    data: report_data.RunData
    seconds: np.ndarray  # each interval's length
    series: dict[tuple[str, str], Series] = field(default_factory=dict)
    lag: np.ndarray = field(default_factory=lambda: np.zeros(0))  # ClickHouse lag samples (s)
    lag_units: np.ndarray = field(default_factory=lambda: np.zeros((0, 2)))  # (sum, count) of neighbouring samples
    skipped: tuple[float, float] = (0.0, 0.0)  # seconds left out at the start and the end (--skip-first, --skip-last)

    @property
    def run_id(self) -> str:
        return self.data.run_id


class _Accumulator:
    """One request name's figures per unit, added up row by row (rows are never all held at once)."""

    def __init__(self, n: int) -> None:
        self.n = n
        self.requests, self.failures, self.max_ms = np.zeros(n), np.zeros(n), np.zeros(n)
        self.columns: dict[int, np.ndarray] = {}  # bucket -> count per unit

    def add(self, i: int, r: dict) -> None:
        self.requests[i] += r["requests"]
        self.failures[i] += r["failures"]
        self.max_ms[i] = max(self.max_ms[i], r["max_ms"])
        for b, c in zip(r.get("buckets") or [], r.get("counts") or [], strict=True):
            column = self.columns.get(b)
            if column is None:
                column = self.columns[b] = np.zeros(self.n)
            column[i] += c

    def series(self) -> Series:
        buckets = sorted(self.columns)
        counts = np.column_stack([self.columns[b] for b in buckets]) if buckets else np.zeros((self.n, 0))
        return Series(self.requests, self.failures, self.max_ms, np.array(buckets, dtype=float), counts)


def interval_lengths(rows: Iterable[dict]) -> dict[int, float]:
    """time_ms -> interval_s of a run's service-time intervals."""
    length: dict[int, float] = {}
    for r in rows:
        if r.get("timing", "service") == "service":
            length[r["time_ms"]] = max(length.get(r["time_ms"], 0.0), float(r.get("interval_s") or 0))
    return length


def build_run(ref: str, data: report_data.RunData, rows: Iterable[dict],
              lengths: dict[int, float] | None = None, skip_first: float = 0.0, skip_last: float = 0.0) -> Run:
    """Arrays of a run's service-time interval rows: one grid of intervals, one Series per request name,
    plus the union of the E2E names ("E2E", "*") and of the dropped-iteration rows ("DROPPED", "*").
    `lengths` (interval_lengths of the same rows) lets `rows` be read once, as a stream. Intervals
    ending in the run's first `skip_first` seconds (its ramp-up) or its last `skip_last` seconds (the
    stop) are left out."""
    if lengths is None:
        rows = list(rows)
        lengths = interval_lengths(rows)
    if (skip_first > 0 or skip_last > 0) and lengths:
        start = min(t - 1000 * length for t, length in lengths.items())
        end = max(lengths)
        lengths = {t: length for t, length in lengths.items()
                   if start + 1000 * skip_first < t <= end - 1000 * skip_last}
    times = sorted(lengths)
    # A long run's consecutive intervals merged into at most MAX_UNITS (exact for histograms and
    # counts), so memory stays bounded and blocks of neighbours stay neighbours.
    per_unit = max(1, math.ceil(len(times) / MAX_UNITS))
    index = {t: i // per_unit for i, t in enumerate(times)}
    units = math.ceil(len(times) / per_unit)
    seconds = np.zeros(units)
    for t in times:
        seconds[index[t]] += lengths[t]
    acc: dict[tuple[str, str], _Accumulator] = {}
    for r in rows:
        i = index.get(r["time_ms"])
        if i is None or r.get("timing", "service") != "service":
            continue
        key = (r["request_type"] or "", r["name"])
        for k in (key, (key[0], "*")) if key[0] in ("E2E", "DROPPED") else (key,):
            if k not in acc:
                acc[k] = _Accumulator(units)
            acc[k].add(i, r)
    run = Run(ref, data, seconds, {k: a.series() for k, a in acc.items()}, skipped=(skip_first, skip_last))
    lag = [v for _, v in data.lag.get("clickhouse lag_seconds") or []]
    per_unit = max(1, math.ceil(len(lag) / MAX_UNITS))  # as the intervals: bounded
    run.lag = np.array(lag, dtype=float)
    run.lag_units = np.array([[sum(lag[i:i + per_unit]), len(lag[i:i + per_unit])]
                              for i in range(0, len(lag), per_unit)], dtype=float).reshape(-1, 2)
    return run


ROW_COLUMNS = ("time_ms", "interval_s", "timing", "request_type", "name", "requests", "failures", "max_ms",
               "buckets", "counts")


def _folder_rows(path: Path) -> Iterator[dict]:
    if path.exists():
        with open(path) as f:
            for line in f:
                try:
                    yield json.loads(line)
                except json.JSONDecodeError:
                    continue  # a line cut by a crash: the rest still counts


def _clickhouse_rows(url: str, database: str, run_id: str) -> Iterator[dict]:
    from plumbing import chclient

    client = chclient.connect(url)
    try:
        for r in client.execute_iter(report_data.QUERIES["intervals"].format(db=database), {"run": run_id}):
            yield dict(zip(ROW_COLUMNS, r, strict=True))
    finally:
        client.disconnect()


def interval_rows(data: report_data.RunData, folder: Path) -> tuple[dict[int, float], Iterator[dict]]:
    """(interval lengths, a stream of the run's interval rows) from where `data` was loaded."""
    if data.clickhouse:
        from plumbing import chclient

        url, database = data.clickhouse
        client = chclient.connect(url)
        lengths = dict(client.execute(report_data.QUERIES["interval_lengths"].format(db=database),
                                      {"run": data.run_id}))
        client.disconnect()
        return lengths, _clickhouse_rows(url, database, data.run_id)
    path = folder / report_data.REQUEST_STATS_FILE
    return interval_lengths(_folder_rows(path)), _folder_rows(path)


def load_run(ref: str, results: Path, source: str = "auto", clickhouse_url: str | None = None,
             database: str | None = None, skip_first: float = 0.0, skip_last: float = 0.0) -> Run:
    """A run by id (ClickHouse, else results/<id>/) or by its folder."""
    from loadtesting.run import monitor_target

    path = Path(ref)
    if path.is_dir() and ((path / "run.json").exists() or (path / report_data.REQUEST_STATS_FILE).exists()):
        results, run_id = path.resolve().parent, path.resolve().name
    elif "/" in ref or not ref:
        raise CompareError(f"{ref!r}: not a run folder (no run.json or {report_data.REQUEST_STATS_FILE}); "
                           "expected a run id or a run folder (results/<run-id>/)")
    else:
        run_id = ref
    try:
        meta = json.loads((results / run_id / "run.json").read_text())
    except (OSError, ValueError):
        meta = {}
    recorded_url, recorded_database = monitor_target(meta, [])
    url = None if source == "csv" else clickhouse_url or recorded_url
    try:
        data = report_data.load(run_id, results, source, url, database or recorded_database)
        lengths, rows = interval_rows(data, results / run_id)
        run = build_run(ref, data, rows, lengths, skip_first, skip_last)
    except report_data.ReportError as exc:
        raise CompareError(str(exc)) from None
    except Exception as exc:  # noqa: BLE001 - e.g. ClickHouse went away between the two queries
        raise CompareError(f"run {run_id}: its intervals could not be read: {exc}") from None
    if not any(len(s.buckets) for s in run.series.values()):
        raise CompareError(f"run {run_id} has no interval histograms (load_test_request_stats or "
                           f"{report_data.REQUEST_STATS_FILE}); expected a run recorded with the suite's monitor")
    return run


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


# -- gates -----------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Gate:
    figure: Figure
    tolerance: float
    relative: bool
    text: str

    def beyond(self, d: Delta) -> bool:
        """The change is beyond the tolerance in the worse direction."""
        change = d.delta if d.figure.lower_is_better else -d.delta
        if self.relative:
            return bool(d.base) and change / abs(d.base) * 100 > self.tolerance
        return change > self.tolerance


GATE = re.compile(r"^([a-z0-9_]+):([+-]?)(\d+(?:\.\d+)?)(%?)$")


def parse_gates(spec: str) -> list[Gate]:
    """`p95:+10%,rps:-5%` -> gates; a bad spec raises CompareError with one line."""
    gates = []
    for part in [p.strip() for p in spec.split(",") if p.strip()]:
        m = GATE.match(part)
        if not m:
            raise CompareError(f"--fail-on {part!r}: expected FIGURE:+N% or FIGURE:+N (e.g. p95:+10%,rps:-5%)")
        name, sign, number, pct = m.groups()
        fig = FIGURES.get(name)
        if fig is None:
            raise CompareError(f"--fail-on {part!r}: unknown figure {name!r}; expected one of "
                               + ", ".join(k for k, f in FIGURES.items() if f.tested))
        if not fig.tested:
            raise CompareError(f"--fail-on {part!r}: {fig.label} is one value per run and has no significance "
                               "test; gate on lag or dropped instead")
        worse = "+" if fig.lower_is_better else "-"
        if sign and sign != worse:
            raise CompareError(f"--fail-on {part!r}: {fig.label} is worse when {'higher' if worse == '+' else 'lower'}; "
                               f"expected {name}:{worse}{number}{pct}")
        gates.append(Gate(fig, float(number), bool(pct), part))
    if not gates:
        raise CompareError(f"--fail-on {spec!r}: no gate; expected e.g. p95:+10%,rps:-5%")
    return gates


def apply_gates(comparison: Comparison, gates: list[Gate]) -> list[tuple[Gate, Delta, bool]]:
    """(gate, its figure's delta, failed) per gate; a figure missing in a run raises CompareError."""
    out = []
    for gate in gates:
        d = comparison.figure(gate.figure.key)
        if d is None or d.delta is None:
            raise CompareError(f"--fail-on {gate.text!r}: {gate.figure.label} is not measured in both runs "
                               f"({comparison.base.run_id}, {comparison.cand.run_id})")
        out.append((gate, d, d.significantly_worse() and gate.beyond(d)))
    return out


# -- markdown --------------------------------------------------------------------------------------
def _num(v: float | None, unit: str) -> str:
    if v is None:
        return "–"
    if math.isinf(v):
        return "∞" if v > 0 else "−∞"
    digits = 3 if unit == "%" and abs(v) < 1 else 0 if unit in ("users", "events") or abs(v) >= 100 else 1
    return fmt(float(v), digits)


def _signed(v: float | None, unit: str) -> str:
    if v is None:
        return "–"
    text = _num(abs(v), unit)
    return ("+" if v > 0 else "−" if v < 0 else "±") + text


def _delta_cell(d: Delta) -> str:
    if d.delta is None:
        return "–"
    rel = d.relative
    unit = "pp" if d.figure.unit == "%" else d.figure.unit
    pct = ""
    if rel is not None and d.figure.unit != "%":
        pct = f" ({'+' if rel > 0 else '−' if rel < 0 else '±'}{abs(rel):.1%})"
    return f"{_signed(d.delta, d.figure.unit)} {unit}{pct}"


def _ci_cell(d: Delta) -> str:
    if d.ci is None:
        return "–"
    return f"{_signed(d.ci[0], d.figure.unit)} … {_signed(d.ci[1], d.figure.unit)}"


def _verdict_cell(d: Delta) -> str:
    if d.ci is None:
        return f"{UNTESTED} ({d.why})" if d.why else UNTESTED
    return f"**{d.verdict}**" if d.verdict in (WORSE, BETTER) else d.verdict


def _row(d: Delta, with_request: bool) -> list[str]:
    unit = d.figure.unit
    cells = [f"{d.figure.label} ({unit})", _num(d.base, unit), _num(d.cand, unit), _delta_cell(d), _ci_cell(d),
             _verdict_cell(d)]
    return ([d.request.replace("|", "\\|")] if with_request else []) + cells


def _table(header: list[str], rows: list[list[str]]) -> list[str]:
    return ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|",
            *["| " + " | ".join(r) + " |" for r in rows]]


def _describe(run: Run) -> str:
    n = len(run.seconds)
    length = float(run.seconds.sum())
    src = "ClickHouse" if run.data.source == "clickhouse" else "run folder"
    first, last = run.skipped
    skipped = (f" (its first {first:g} s and last {last:g} s left out)" if first and last else
               f" (its first {first:g} s left out)" if first else f" (its last {last:g} s left out)" if last else "")
    return (f"`{run.run_id}` ({run.data.kind}, started {run.data.meta.get('started') or '–'}, "
            f"{n} intervals over {length:.0f} s{skipped}, from {src})")


def markdown(c: Comparison, gates: list[tuple[Gate, Delta, bool]] | None = None, level: int = 1) -> list[str]:
    h = "#" * level
    worse = [d for d in [*c.key, *c.requests] if d.verdict == WORSE]
    better = [d for d in [*c.key, *c.requests] if d.verdict == BETTER]
    md = [f"{h} Comparison with baseline run {c.base.run_id}" if level > 1 else
          f"{h} Run {c.cand.run_id} compared with baseline {c.base.run_id}", "",
          f"Baseline {_describe(c.base)}; candidate {_describe(c.cand)}.", ""]
    summary = (f"{len(worse)} figure(s) **worse**: " + ", ".join(f"{d.figure.label}"
                                                              + (f" of {d.request}" if d.request else "")
                                                              for d in worse) + "." if worse else
               "No figure is worse.")
    if better:
        summary += f" {len(better)} better."
    md += [summary, ""]
    md += ["Delta is candidate minus baseline; its 95 % confidence interval comes from a moving-block bootstrap "
           f"over each run's monitor intervals ({REPLICATES} replicates: resample intervals, merge their "
           "histograms, recompute the figure). A verdict of better or worse needs the interval to exclude 0 "
           "and the change to reach the figure's practical size (latency 20 % and one histogram bucket, "
           "requests/s 10 %, failure ratio 0.5 points, lag 20 % and 0.5 s); gates use their own tolerance. The bootstrap sees the noise "
           "within each run, not the run-to-run variation of the machine: see docs/compare.md.", ""]
    md += [f"{h}# Key figures", ""]
    md += _table(["figure", "baseline", "candidate", "delta", "95 % CI of delta", "verdict"],
                 [_row(d, False) for d in c.key]) + [""]
    if c.requests:
        md += [f"{h}# Per request", ""]
        md += _table(["request", "figure", "baseline", "candidate", "delta", "95 % CI of delta", "verdict"],
                     [_row(d, True) for d in c.requests]) + [""]
    if gates:
        md += [f"{h}# Gates", ""]
        md += _table(["gate", "delta", "significantly worse", "result"],
                     [[g.text, _delta_cell(d), "yes" if d.significantly_worse() else "no",
                       "**failed**" if failed else "passed"] for g, d, failed in gates]) + [""]
    return md


def section(c: Comparison) -> Callable[[object], list[str]]:
    """A report section (loadtesting.report.markdown.render's `extra`) holding this comparison."""
    return lambda _page: markdown(c, level=2)


def baseline_section(baseline: str, data: report_data.RunData, results: Path, clickhouse_url: str | None,
                     database: str | None) -> Callable[[object], list[str]]:
    """The section comparing a loaded run (the report's `data`) with `baseline` (run id or folder)."""
    base = load_run(baseline, results, "auto", clickhouse_url, database)
    try:
        lengths, rows = interval_rows(data, results / data.run_id)
        cand = build_run(data.run_id, data, rows, lengths)
    except Exception as exc:  # noqa: BLE001 - ClickHouse went away since the report loaded the run
        raise CompareError(f"run {data.run_id}: its intervals could not be read: {exc}") from None
    return section(compare(base, cand))


def chart(c: Comparison, path: Path) -> Path | None:
    """p95 per interval of both runs (Aggregated), on one time axis from each run's start."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(10, 3.5))
    drawn = False
    for run, label, colour in ((c.base, "baseline", "#1f77b4"), (c.cand, "candidate", "#d62728")):
        s = run.series.get(AGGREGATED)
        if s is None or not len(run.seconds):
            continue
        p95 = percentile(s, np.eye(len(run.seconds)), 0.95)
        ax.plot(np.cumsum(run.seconds), p95, label=f"{label} {run.run_id}", color=colour, linewidth=1.2)
        drawn = True
    if not drawn:
        plt.close(fig)
        return None
    return charts.finish(fig, ax, "seconds since start", "p95 per interval (ms)", path)


# -- command line ----------------------------------------------------------------------------------
def main(argv: list[str] | None = None) -> int:
    from plumbing import logs
    from plumbing.redaction import redact_text

    logs.setup()
    parser = argparse.ArgumentParser(prog="python -m loadtesting.compare", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("baseline", help="run id or run folder of the baseline")
    parser.add_argument("candidate", help="run id or run folder of the run to judge")
    parser.add_argument("--fail-on", default="", metavar="GATES",
                        help="exit 1 when one of these figures is significantly worse beyond its tolerance, "
                             "e.g. p95:+10%%,rps:-5%%,failures:+1 (figures: "
                             + ", ".join(k for k, f in FIGURES.items() if f.tested) + ")")
    parser.add_argument("--results", type=Path, default=report_data.RESULTS,
                        help="folder of run folders for run ids (default results/)")
    parser.add_argument("--source", choices=("auto", "clickhouse", "csv"), default="auto",
                        help="where figures come from (auto: ClickHouse when it has the run, else the folder)")
    parser.add_argument("--clickhouse-url", default=None,
                        help="default: what each run recorded in run.json, else LOCUST_CLICKHOUSE_URL or the stack's")
    parser.add_argument("--monitor-database", default=None, help="default: the run's, else event_sink")
    parser.add_argument("--skip-first", type=float, default=0.0, metavar="SECONDS",
                        help="leave out each run's intervals ending in its first SECONDS (ramp-up, warm-up); "
                             "the figures are then those of the rest, not the report's whole-run ones")
    parser.add_argument("--skip-last", type=float, default=0.0, metavar="SECONDS",
                        help="leave out each run's intervals ending in its last SECONDS (the stop; a pipeline "
                             "run's drain holds end-to-end latencies, keep it)")
    parser.add_argument("--out", type=Path,
                        help="also write compare-<baseline>-<candidate>.md and .html (self-contained) here")
    args = parser.parse_args(argv)
    try:
        for name, value in (("--skip-first", args.skip_first), ("--skip-last", args.skip_last)):
            if not (value >= 0 and math.isfinite(value)):
                raise CompareError(f"{name} {value:g}: expected seconds >= 0")
        gates = parse_gates(args.fail_on) if args.fail_on else []
        runs = [load_run(ref, args.results, args.source, args.clickhouse_url, args.monitor_database,
                         args.skip_first, args.skip_last) for ref in (args.baseline, args.candidate)]
        for run in runs:
            if args.source == "auto" and run.data.source != "clickhouse":
                print(f"note: run {run.run_id} read from its run folder (ClickHouse unreachable, or the run is "
                      "not there)", file=sys.stderr)
        comparison = compare(*runs)
        results = apply_gates(comparison, gates) if gates else []
    except CompareError as exc:
        print(f"error: {redact_text(str(exc))}", file=sys.stderr)
        return 2
    md = "\n".join(markdown(comparison, results)) + "\n"
    sys.stdout.write(md)
    if args.out:
        from loadtesting.report import html

        args.out.mkdir(parents=True, exist_ok=True)
        path = args.out / f"compare-{comparison.base.run_id}-{comparison.cand.run_id}.md"
        png = chart(comparison, path.with_suffix(".png"))
        path.write_text(md + (f"\n![p95 per interval]({png.name})\n" if png else ""))
        print(f"comparison: {path} and {html.write(path)}", file=sys.stderr)
    failed = [g.text for g, _d, bad in results if bad]
    if failed:
        print(f"gate failed: {', '.join(failed)} (significantly worse beyond the tolerance)", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
