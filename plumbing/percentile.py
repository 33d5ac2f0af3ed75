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
