"""Latency histograms of sampling intervals, merged into exact percentiles (Python and SQL).

Each interval row of `load_test_request_stats` carries the interval's histogram in Locust's own
response-time buckets (`buckets` ascending, `counts` beside them: the delta of
`StatsEntry.response_times` over the interval). Adding histograms is exact, so the percentile of
any run of intervals (the whole run, a phase, a capacity step) is the one Locust would give for
those requests; averaging the intervals' percentiles is not ("a mean of percentiles is not a
percentile").

The rule is Locust's (`locust.stats.calculate_response_time_percentile`): with N timed requests
and k = int(N * p), the percentile is the smallest bucket whose cumulative count exceeds k.
Buckets round up to 5 %, so the bucket can lie above the slowest request (locust#1563); every
figure here is clamped to the maximum, as `stats.json` is.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence

PERCENTILES = (0.50, 0.95, 0.99)


def merge(histograms: Iterable[tuple[Sequence[int], Sequence[int]]]) -> dict[int, int]:
    """Sum of (buckets, counts) histograms, as one {bucket: count} dict."""
    out: dict[int, int] = {}
    for buckets, counts in histograms:
        for b, c in zip(buckets, counts, strict=True):
            out[b] = out.get(b, 0) + c
    return out


def arrays(hist: dict[int, int]) -> tuple[list[int], list[int]]:
    """(buckets ascending, counts) of a {bucket: count} dict, zero counts left out."""
    keys = sorted(b for b, c in hist.items() if c)
    return keys, [hist[b] for b in keys]


def percentile(hist: dict[int, int], p: float, max_ms: float | None = None) -> float | None:
    """Locust's percentile of a histogram, at most `max_ms`; None when the histogram is empty."""
    buckets, counts = arrays(hist)
    total = sum(counts)
    if not total:
        return None
    k = int(total * p)
    seen = 0
    value = buckets[-1]
    for b, c in zip(buckets, counts, strict=True):
        seen += c
        if seen > k:
            value = b
            break
    return min(value, max_ms) if max_ms is not None else value


def summary(hist: dict[int, int], max_ms: float | None = None) -> dict:
    """p50/p95/p99 (ms) of a histogram, keyed p50_ms, p95_ms, p99_ms."""
    return {f"p{round(p * 100)}_ms": percentile(hist, p, max_ms) for p in PERCENTILES}


# -- SQL (ClickHouse 18.16 and current: sumMap, arrayCumSum, arrayFirst) --------------------------
def _percentile_sql(p: float) -> str:
    # `total * p` is Float64 as in Python, and toUInt64 truncates as int() does: the same k.
    return f"least(toFloat64(arrayFirst((b, c) -> c > toUInt64(total * {p!r}), ks, cum)), max_ms)"


def merged_sql(database: str, where: str = "", group: str = "timing, request_type, name") -> str:
    """Merged figures per `group` of a run's interval rows (`%(run)s`), filtered by `where` (SQL).

    Columns: the group's columns, then requests, failures, avg_ms, max_ms, timed (requests with a
    time in the histograms: 0 for rows written before histograms were stored), p50_ms, p95_ms, p99_ms.
    """
    pcts = ", ".join(f"{_percentile_sql(p)} AS p{round(p * 100)}" for p in PERCENTILES)
    return (f"SELECT {group}, n, f, avg_ms, max_ms, total, {pcts} FROM ("
            f"SELECT {group}, sum(requests) AS n, sum(failures) AS f, "
            "sum(avg_ms * requests) / greatest(sum(requests), 1) AS avg_ms, max(max_ms) AS max_ms, "
            "sumMap(buckets, counts) AS h, h.1 AS ks, arrayCumSum(h.2) AS cum, arraySum(h.2) AS total "
            f"FROM {database}.load_test_request_stats WHERE run_id = %(run)s {where} GROUP BY {group}) "
            f"ORDER BY {group}")


# -- latencies measured by the suite itself (Kafka latency TOTAL) ---------------------------------
EXACT_BELOW_MS = 10_000  # 1 ms buckets below this, three significant digits at and above


def latency_bucket(ms: float) -> int:
    """A latency's bucket: the nearest whole millisecond below 10 s (exact for the whole-millisecond
    deltas of Kafka timestamps), three significant digits from 10 s on (at most 0.5 % off). The
    buckets of any run of messages stay below ~12,000 however many messages there are."""
    if ms < EXACT_BELOW_MS:
        return int(ms + 0.5)
    scale = 10 ** (len(str(int(ms))) - 3)
    return int(ms / scale + 0.5) * scale


def nearest_rank(hist: dict[int, int], p: float) -> float:
    """The nearest-rank percentile (plumbing.percentile's rule) of a {bucket: count} histogram: the
    smallest bucket with at least p of all counts at or below it; 0.0 when empty."""
    buckets, counts = arrays(hist)
    total = sum(counts)
    if not total:
        return 0.0
    need = max(1, math.ceil(p * total))
    seen = 0
    for b, c in zip(buckets, counts, strict=True):
        seen += c
        if seen >= need:
            return b
    return buckets[-1]
