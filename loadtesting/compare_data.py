"""A run's monitor intervals as arrays, for ``python -m loadtesting.compare``: its interval rows read
from ClickHouse or its run folder (``load_run``, ``interval_rows``) and laid on one grid of intervals,
one ``Series`` per request name (``build_run``)."""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from loadtesting.report import data as report_data

MAX_UNITS = 500  # a longer run's neighbouring intervals are merged into this many
AGGREGATED = ("", "Aggregated")


class CompareError(RuntimeError):
    """Bad input: one line for the user."""


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
