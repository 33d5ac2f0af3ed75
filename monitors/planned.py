"""Latency from the planned start of open-model requests (coordinated omission).

Under an open model (the arrival-rate scheduler) every iteration has a planned instant; it puts
that instant into the request event's context as ``context["planned_start"]`` (epoch seconds,
`time.time()` based). A late iteration delays the requests queued behind it, and Locust's
response time, measured from the moment a request was actually sent, hides that (locust#2347).

For every request whose context has the key, this records ``time.time() - planned_start`` at the
moment the request event fires, in ms (and the same figure for successes reported in batches,
`plumbing.bulk_stats.planned_batch`), into a second `locust.stats.RequestStats` of its own
(`planned_stats(environment)`), never into Locust's stats, so Aggregated counts every request once.
Workers send theirs to the master with each report (`events.report_to_master` /
`events.worker_report`), as Locust does with its own stats. The monitor stores it per interval
with its histogram (`timing = 'planned'` rows of load_test_request_stats) and stats.json holds
its final figures (`from_planned_start`).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from locust import events
from locust.stats import RequestStats, StatsEntry

from plumbing import run_state
from plumbing.bulk_stats import log_grouped, planned_batch
from plumbing.request_context import PLANNED_START

# Keys of a worker's report; distinct from Locust's own ("stats", "stats_total", "errors").
REPORT_ENTRIES, REPORT_TOTAL = "planned_start_stats", "planned_start_total"


@dataclass
class PlannedTimings:
    """This process's latencies from the planned start (plumbing.run_state)."""

    stats: RequestStats = field(default_factory=lambda: RequestStats(use_response_times_cache=False))


def planned_stats(environment) -> RequestStats:
    """This process's latencies from the planned start (created on first use)."""
    return run_state.of(environment, PlannedTimings).stats


@events.init.add_listener
def _install(environment, **_kw) -> None:
    stats = planned_stats(environment)

    def on_request(request_type, name, response_time, response_length, exception=None, context=None, **_kw):
        planned = context.get(PLANNED_START) if context else None
        if planned is None:
            return
        # Fired when the response is complete: from the planned instant to now is what a user waited.
        ms = max(0.0, (time.time() - planned) * 1000)
        stats.log_request(request_type, name, ms, response_length or 0)
        if exception is not None:  # counted only: Locust's own stats keep the error messages
            stats.total.log_error(exception)
            stats.get(name, request_type).log_error(exception)

    def on_report_to_master(client_id, data, **_kw) -> None:
        current = planned_stats(environment)
        if current.total.num_requests or current.total.num_failures:
            data[REPORT_ENTRIES] = current.serialize_stats()  # the entries' reports reset them, as Locust's do
            data[REPORT_TOTAL] = current.total.get_stripped_report()

    def on_worker_report(client_id, data, **_kw) -> None:
        if REPORT_TOTAL not in data:
            return
        current = planned_stats(environment)
        for item in data[REPORT_ENTRIES]:
            entry = StatsEntry.unserialize(item, current)
            current.get(entry.name, entry.method).extend(entry)
        current.total.extend(StatsEntry.unserialize(data[REPORT_TOTAL], current))

    def on_planned_batch(environment, request_type, items, **_kw) -> None:
        # Successes reported in batches (plumbing.bulk_stats.RequestBatch), each timed to its own response.
        if environment is not env:
            return
        log_grouped(stats, request_type, [(name, max(0.0, ms), size) for name, ms, size in items])

    env = environment
    environment.events.request.add_listener(on_request)
    planned_batch.add_listener(on_planned_batch)
    environment.events.report_to_master.add_listener(on_report_to_master)
    environment.events.worker_report.add_listener(on_worker_report)


@events.test_start.add_listener
def _reset(environment, **_kw) -> None:
    # Locust starts each test with empty stats; so do these (the web UI can start several tests).
    planned_stats(environment).clear_all()
