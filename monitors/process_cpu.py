"""Each Locust process's own CPU use, over spans of a few seconds, and the workers' on their master.

Locust's own figure (`runner.current_cpu_usage`, a worker's in its heartbeat) is read every 10 s
(`locust.runners.CPU_MONITOR_INTERVAL`) and is 0 until its second reading: a capacity step's
window of 20 s holds one or two such readings, and a worker's first window reads 0 % whatever it
spent. This measures the process's CPU time (`time.process_time()`: every thread, user + system)
against wall time over spans of at least `SPAN_S`; a worker sends its figure with each report
(every few seconds, `events.report_to_master`) and its master keeps the latest of each worker.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from locust import events

from plumbing import run_state

SPAN_S = 2.0  # shortest span a figure covers: a busy moment (a collection, a burst) is not a busy process
REPORT_KEY = "process_cpu_percent"  # in a worker's report; Locust's own keys are "stats", "errors", …


@dataclass
class ProcessCpu:
    """This process's CPU readings and, on a master, its workers' latest (plumbing.run_state)."""

    last: tuple[float, float] | None = None  # (monotonic s, process CPU s) at the start of the current span
    percent: float | None = None  # over the last complete span (100 = one core)
    workers: dict[str, tuple[float, float]] = field(default_factory=dict)  # client id -> (time.time(), percent)


def percent(environment) -> float | None:
    """This process's CPU % over its last span of at least SPAN_S (None before the first span ends)."""
    state = run_state.of(environment, ProcessCpu)
    now, cpu = time.monotonic(), time.process_time()
    if state.last is None:
        state.last = (now, cpu)
    elif now - state.last[0] >= SPAN_S:
        state.percent = round(100.0 * (cpu - state.last[1]) / (now - state.last[0]), 1)
        state.last = (now, cpu)
    return state.percent


def workers(environment, within_s: float) -> dict[str, float]:
    """On a master: each worker's latest figure received within the last `within_s` seconds."""
    now = time.time()
    return {cid: p for cid, (t, p) in run_state.of(environment, ProcessCpu).workers.items() if now - t <= within_s}


@events.init.add_listener
def _install(environment, **_kw) -> None:
    def on_report_to_master(client_id, data, **_kw) -> None:
        value = percent(environment)
        if value is not None:
            data[REPORT_KEY] = value

    def on_worker_report(client_id, data, **_kw) -> None:
        if REPORT_KEY in data:
            run_state.of(environment, ProcessCpu).workers[client_id] = (time.time(), float(data[REPORT_KEY]))

    environment.events.report_to_master.add_listener(on_report_to_master)
    environment.events.worker_report.add_listener(on_worker_report)
