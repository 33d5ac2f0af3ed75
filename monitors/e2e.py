"""End-to-end latency in Locust's stats: rows of their own (request type E2E), outside Aggregated.

An end-to-end latency (a tracking event's time → its statement in ClickHouse, a message produced →
read from the pipeline's output topic) is no request of the generator. It goes into its own
StatsEntry only, as the open model's DROPPED rows do, never into Locust's total: Aggregated, and
every check, capacity step and chart built on it, holds the generator's own requests. The E2E rows
still reach Locust's CSV files, stats.json, the web UI, the monitor's interval rows and, in a
distributed run, the master (a worker reports its entries and its total apart).
"""

from __future__ import annotations

E2E = "E2E"  # request type of the end-to-end latency rows


def record(environment, name: str, ms: float, length: int = 0) -> None:
    """One end-to-end latency (ms) in the E2E row `name`, outside Aggregated."""
    environment.stats.get(name, E2E).log(ms, length)


def merged(stats):
    """Every E2E row of `stats` merged into one locust.stats.StatsEntry (histograms added), or None."""
    from locust.stats import StatsEntry  # here: the report imports this module without Locust (no gevent patching)

    rows = [e for (_name, method), e in stats.entries.items() if method == E2E and e.num_requests]
    if not rows:
        return None
    total = StatsEntry(stats, "E2E", E2E)
    for row in rows:
        total.extend(row)
    return total


def p95(stats) -> float | None:
    """The 95th percentile of every end-to-end latency (ms), at most the slowest; None without any."""
    total = merged(stats)
    if total is None:
        return None
    return min(total.get_response_time_percentile(0.95), total.max_response_time or 0)
