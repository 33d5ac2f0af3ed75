"""Each worker's clock offset from the master, measured NTP-style over Locust's own worker messages.

Across machines, a latency from a time stamped on one host to a time read on another compares two
clocks: a tracking event's time is the worker's clock, its arrival in ClickHouse is seen on the master's.
Each worker sends `clock_ping` (its send time t1) to the master, which answers `clock_pong` with its
receive and send times (t2, t3); the worker notes the answer's arrival (t4). Per exchange

    offset = ((t2 − t1) + (t3 − t4)) / 2      (master clock − worker clock)
    delay  = (t4 − t1) − (t3 − t2)            (the round trip on the wire and in the event loops)

and the true offset lies within offset ± delay/2 whatever the asymmetry of the two ways (NTP's bound).
Of the last exchanges a worker keeps the one with the shortest delay (the tightest bound) and reports
it to the master (`clock_offset`). Pings go out in a burst when the test starts and then every few
seconds, so drift during a long run is followed.

On the master, `offsets(environment)` gives worker index -> offset in seconds (add it to a worker's
time to get the master's), used to correct latencies that span hosts; the figures go with the run's
end row (`clocks`: per worker offset, uncertainty, round trip, exchanges) and into the report.
Messages through the public API only: `runner.register_message` / `runner.send_message`.
"""

from __future__ import annotations

import logging
import time
from collections import deque
from dataclasses import dataclass, field

import gevent
from locust import events
from locust.runners import MasterRunner, WorkerRunner

from lifecycle import end
from lifecycle.end import add_run_extra
from plumbing import run_state

log = logging.getLogger("monitors.clocks")

BURST = 8  # exchanges at test start, BURST_GAP s apart
BURST_GAP = 0.05
EVERY = 2.0  # s between exchanges afterwards
KEEP = 16  # exchanges the best is chosen from


@dataclass
class Exchange:
    offset: float  # s, master − worker
    delay: float  # s, round trip less the master's own time


def exchange(t1: float, t2: float, t3: float, t4: float) -> Exchange:
    """One NTP exchange: sent t1 (worker clock), received t2 and answered t3 (master clock), back t4."""
    return Exchange(offset=((t2 - t1) + (t3 - t4)) / 2, delay=max(0.0, (t4 - t1) - (t3 - t2)))


def best(exchanges) -> Exchange | None:
    """The exchange with the shortest round trip: its offset has the tightest bound (± delay/2)."""
    return min(exchanges, key=lambda e: e.delay, default=None)


@dataclass
class ClockRun:
    """This process's clock state (plumbing.run_state)."""

    recent: deque = field(default_factory=lambda: deque(maxlen=KEEP))  # worker: Exchange
    count: int = 0  # worker: exchanges so far
    pinger: object = None  # worker: the ping greenlet
    reports: dict[int, dict] = field(default_factory=dict)  # master: worker index -> latest report


def offsets(environment) -> dict[int, float]:
    """Master: worker index -> offset in seconds (master − worker); empty elsewhere or before reports."""
    return {i: r["offset_ms"] / 1000 for i, r in run_state.of(environment, ClockRun).reports.items()}


def worker_offset(environment) -> float:
    """Worker: its best offset so far in seconds (master − worker), 0 before any exchange."""
    b = best(run_state.of(environment, ClockRun).recent)
    return b.offset if b else 0.0


def summary(environment) -> dict | None:
    """The workers' offsets as stored with the run, or None without workers."""
    reports = run_state.of(environment, ClockRun).reports
    if not reports:
        return None
    return {"workers": {str(i): reports[i] for i in sorted(reports)},
            "max_abs_offset_ms": max(abs(r["offset_ms"]) for r in reports.values()),
            "max_uncertainty_ms": max(r["uncertainty_ms"] for r in reports.values())}


# -- the exchange ---------------------------------------------------------------------------------------
def _on_ping(environment, msg, **_kw) -> None:
    t2 = time.time()
    environment.runner.send_message("clock_pong", {**msg.data, "t2": t2, "t3": time.time()}, client_id=msg.node_id)


def _on_pong(environment, msg, **_kw) -> None:
    t4 = time.time()
    d = msg.data
    run = run_state.of(environment, ClockRun)
    run.recent.append(exchange(d["t1"], d["t2"], d["t3"], t4))
    run.count += 1
    b = best(run.recent)
    runner = environment.runner
    runner.send_message("clock_offset", {
        "index": runner.worker_index, "offset_ms": round(b.offset * 1000, 3),
        "uncertainty_ms": round(b.delay * 500, 3), "round_trip_ms": round(b.delay * 1000, 3),
        "exchanges": run.count})


def _on_report(environment, msg, **_kw) -> None:
    data = dict(msg.data)
    run_state.of(environment, ClockRun).reports[int(data.pop("index"))] = data


def _ping_loop(runner) -> None:
    for _ in range(BURST):
        runner.send_message("clock_ping", {"t1": time.time()})
        gevent.sleep(BURST_GAP)
    while True:
        gevent.sleep(EVERY)
        runner.send_message("clock_ping", {"t1": time.time()})


@events.init.add_listener
def _init(environment, runner=None, **_kw) -> None:
    if isinstance(runner, MasterRunner):
        runner.register_message("clock_ping", _on_ping)
        runner.register_message("clock_offset", _on_report)
    elif isinstance(runner, WorkerRunner):
        runner.register_message("clock_pong", _on_pong)


@events.test_start.add_listener
def _test_start(environment, **_kw) -> None:
    runner = environment.runner
    run = run_state.of(environment, ClockRun)
    if isinstance(runner, WorkerRunner) and run.pinger is None:
        run.pinger = gevent.spawn(_ping_loop, runner)


@end.run_measured.add_listener
def _measured(environment, **_kw) -> None:
    run = run_state.of(environment, ClockRun)
    if run.pinger is not None:
        run.pinger.kill(block=False)
        run.pinger = None
    if isinstance(environment.runner, MasterRunner):
        s = summary(environment)
        if s is not None:
            log.info(summary_line(s))
            add_run_extra(environment, clocks=s)


def summary_line(s: dict) -> str:
    parts = [f"worker {i} {r['offset_ms']:+.1f} ms ± {r['uncertainty_ms']:.1f} ms" for i, r in s["workers"].items()]
    return "clock offsets from the master (master − worker): " + ", ".join(parts)
