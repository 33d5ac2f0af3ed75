"""The percentile rule of the suite's own latency figures (Kafka latency windows, tracking E2E)."""

from __future__ import annotations

import math


def percentile(sorted_values: list[float], p: float) -> float:
    """Nearest-rank percentile of an ascending list: the smallest value with at least p of all at or below it.

    Locust's histogram percentiles (its CSV and web UI) round times into buckets and take the next
    rank up, so at an exact boundary they can name a higher value than this exact figure.
    """
    if not sorted_values:
        return 0.0
    k = max(0, min(len(sorted_values) - 1, math.ceil(p * len(sorted_values)) - 1))
    return sorted_values[k]


def percentile_of_counts(counts: dict[float, int], p: float) -> float:
    """`percentile` of the values that `counts` ({value: how many times}) holds, without listing them."""
    total = sum(counts.values())
    if not total:
        return 0.0
    rank = max(0, min(total - 1, math.ceil(p * total) - 1))
    seen = 0
    for value in sorted(counts):
        seen += counts[value]
        if seen > rank:
            return value
    return max(counts)
