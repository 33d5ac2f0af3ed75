"""Fold many successful requests into Locust's statistics at once.

`events.request.fire` costs ~2.5 µs per call with Locust's own listener alone (~6 µs with the
suite's latency-from-the-planned-start listener), more than librdkafka needs to produce a message,
so a generator that reports every message that way spends most of its CPU on bookkeeping. The
figures here are added to the same `StatsEntry` figures Locust keeps — count, per-second counts,
rounded response-time histogram, total, min, max, content length — in one pass per flush.
Percentiles, CSV, the web UI and distributed aggregation see exactly what per-request events would
have produced. Failures still go through `events.request` one by one (they are rare and listeners
want them).

- `BulkRequests`: the successes of one (request_type, name) (the Kafka producer's deliveries).
- `RequestBatch`: successes of any names, each with its own response time, size and planned
  instant (the tracking generator's events); `flush()` adds them to Locust's statistics and hands
  the ones with a planned instant to the `planned_batch` listeners (monitors.planned records their
  latency from the planned start, as it does for a request event's `planned_start`).
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable

# Locust is imported where it is used: backends/ import this module and stay importable without
# Locust (which monkey-patches the standard library on import).


class Hook:
    """Listeners called in the order they were added (as Locust's EventHook, without Locust)."""

    def __init__(self) -> None:
        self._handlers: list[Callable] = []

    def add_listener(self, handler: Callable) -> Callable:
        self._handlers.append(handler)
        return handler

    def fire(self, **kwargs) -> None:
        for handler in self._handlers:
            handler(**kwargs)


# Fired by RequestBatch.flush with environment, request_type, items: [(name, ms from the planned start
# to the response, size)] (each measured when its response came).
planned_batch = Hook()


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
        log_many(self.environment.stats, self.request_type, self.name, times, length)
        return len(times)


def log_many(stats, request_type: str, name: str, times: list[float], length: int) -> None:
    """`stats.log_request(request_type, name, t, …)` for every t in `times` (ms, at least one), with
    `length` bytes in all: the entry and the total."""
    # The first one goes through Locust's own bookkeeping, which also snapshots the
    # response-time history at second boundaries (current percentiles in CSV and UI).
    buckets = Counter(map(round, times[1:]))
    for entry in (stats.total, stats.get(name, request_type)):
        entry.log(times[0], length)
        add_to_entry(entry, times[1:], buckets)


def log_grouped(stats, request_type: str, items: list[tuple[str, float, int]]) -> None:
    """`stats.log_request(request_type, name, ms, size)` for each (name, ms, size) of `items`, by name."""
    by_name: dict[str, tuple[list[float], list[int]]] = {}
    for name, ms, size in items:
        times, sizes = by_name.setdefault(name, ([], [0]))
        times.append(ms)
        sizes[0] += size
    for name, (times, sizes) in by_name.items():
        log_many(stats, request_type, name, times, sizes[0])


class RequestBatch:
    """Successes of `request_type` waiting for `flush()`: `add((name, response_time_ms, size,
    from_planned_ms))` from the hot path, as each response comes (from_planned_ms: from the instant
    the request was planned for to its response, None outside the open model)."""

    def __init__(self, environment, request_type: str) -> None:
        self.environment, self.request_type = environment, request_type
        self.items: list[tuple[str, float, int, float | None]] = []
        self.add = self.items.append  # bound once: the hot path calls it per request

    def __len__(self) -> int:
        return len(self.items)

    def flush(self) -> int:
        """Add the pending successes to the statistics (and the planned ones to planned_batch's
        listeners); returns how many."""
        items = self.items
        if not items:
            return 0
        batch = items[:]
        items.clear()  # the same list: `add` stays bound to it
        log_grouped(self.environment.stats, self.request_type, [(name, ms, size) for name, ms, size, _p in batch])
        planned = [(name, p, size) for name, _ms, size, p in batch if p is not None]
        if planned:
            planned_batch.fire(environment=self.environment, request_type=self.request_type, items=planned)
        return len(batch)


def add_to_entry(entry, times: list[float], buckets: Counter) -> None:
    """What `StatsEntry.log` does once per time, for all `times` together (their bytes were logged with
    the first request of the flush)."""
    from locust.stats import bucket_response_time

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
