"""Fold many successful requests into Locust's statistics at once.

`events.request.fire` costs ~2.5 µs per call, more than librdkafka needs to produce a message, so
a generator that reports every message that way spends most of its CPU on bookkeeping. A
`BulkRequests` collects (response time, bytes) pairs and adds them to the same `StatsEntry`
figures Locust keeps — count, per-second counts, rounded response-time histogram, total, min, max,
content length — in one pass per flush. Percentiles, CSV, the web UI and distributed aggregation
see exactly what per-request events would have produced. Failures still go through
`events.request` one by one (they are rare and listeners want them).
"""

from __future__ import annotations

import time
from collections import Counter

from locust.stats import bucket_response_time


class BulkRequests:
    """Pending successes of one (request_type, name); `flush()` adds them to `environment.stats`.

    Hot paths append response times in **seconds** to `pending` through a bound `pending.append`
    (the list object never changes) and add their bytes to `bytes`.
    """

    def __init__(self, environment, request_type: str, name: str) -> None:
        self.environment, self.request_type, self.name = environment, request_type, name
        self.pending: list[float] = []
        self.bytes = 0
        self.count = 0  # requests flushed so far

    def flush(self) -> int:
        """Add the pending requests to the statistics; returns how many."""
        if not self.pending:
            return 0
        times = [t * 1000 for t in self.pending]
        self.pending.clear()
        length, self.bytes = self.bytes, 0
        self.count += len(times)
        stats = self.environment.stats
        # The first one goes through Locust's own bookkeeping, which also snapshots the
        # response-time history at second boundaries (current percentiles in CSV and UI).
        buckets = Counter(map(round, times[1:]))
        for entry in (stats.total, stats.get(self.name, self.request_type)):
            entry.log(times[0], length)
            add_to_entry(entry, times[1:], buckets)
        return len(times)


def add_to_entry(entry, times: list[float], buckets: Counter) -> None:
    """What `StatsEntry.log` does once per time, for all `times` together (their bytes were logged with
    the first request of the flush)."""
    if not times:
        return
    now = time.time()
    n = len(times)
    entry.num_requests += n
    entry.num_reqs_per_sec[int(now)] += n
    entry.last_request_timestamp = now
    entry.total_response_time += sum(times)
    low, high = min(times), max(times)
    entry.min_response_time = low if entry.min_response_time is None else min(entry.min_response_time, low)
    entry.max_response_time = max(entry.max_response_time, high)
    # `buckets` counts times per whole millisecond (Counter runs in C): bucket each key once.
    for ms, count in buckets.items():
        entry.response_times[bucket_response_time(ms)] += count
