"""A master that quits while its workers still run gets their last figures first.

At --run-time (and any `runner.quit()`) Locust's master quits without stopping its workers: it sends
them `quit` and waits 0.5 s for their last stats report (MasterRunner.quit). A worker still finishing
its users' requests, on a loaded or distant host, reports later than that, and its last requests are
in no figure although the system served them. So when the master's test stops with workers still
running, it first asks them to stop (`final_reports_stop`: each calls its runner's `stop()`, which ends
its users within --stop-timeout, and answers `final_reports_stopped`), then waits until each has sent
a stats report after stopping, at most --stop-timeout plus two report intervals. Then Locust's quit
goes on; the workers' own last report after `quit` has nothing left to carry.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field

import gevent
from locust import events
from locust.runners import STATE_RUNNING, STATE_SPAWNING, WORKER_REPORT_INTERVAL, MasterRunner, WorkerRunner

from plumbing import run_state

log = logging.getLogger("monitors.final_reports")


@dataclass
class FinalReports:
    """Master: the workers asked to stop, those that stopped, those that reported since (run_state)."""

    asked: set = field(default_factory=set)
    stopped: set = field(default_factory=set)
    reported: set = field(default_factory=set)


def _stopped(environment, msg, **_kw) -> None:
    run_state.of(environment, FinalReports).stopped.add(msg.node_id)


@events.init.add_listener
def _init(environment, runner=None, **_kw) -> None:
    if isinstance(runner, MasterRunner):
        runner.register_message("final_reports_stopped", _stopped)

        def report(client_id, data, **_kw) -> None:
            run = run_state.of(environment, FinalReports)
            if client_id in run.stopped:
                run.reported.add(client_id)

        environment.events.worker_report.add_listener(report)
    elif isinstance(runner, WorkerRunner):
        def stop(environment, msg, **_kw) -> None:
            def run() -> None:
                environment.runner.stop()
                environment.runner.send_message("final_reports_stopped", None)

            gevent.spawn(run)

        runner.register_message("final_reports_stop", stop)


@events.test_stop.add_listener
def _test_stop(environment, **_kw) -> None:
    runner = environment.runner
    if not isinstance(runner, MasterRunner):
        return
    running = {c.id for c in runner.clients.all if c.state in (STATE_RUNNING, STATE_SPAWNING)}
    if not running:
        return  # stopped the usual way (the web UI, a shape): the workers reported when they stopped
    run = run_state.of(environment, FinalReports)
    run.asked, run.stopped, run.reported = set(running), set(), set()
    for client_id in running:
        runner.send_message("final_reports_stop", None, client_id=client_id)
    deadline = time.monotonic() + (environment.stop_timeout or 0) + 2 * WORKER_REPORT_INTERVAL
    while run.asked - run.reported and time.monotonic() < deadline:
        gevent.sleep(0.05)
    if run.asked - run.reported:
        log.warning("%d worker(s) sent no report after stopping within %.0f s; their last requests may be "
                    "missing", len(run.asked - run.reported), (environment.stop_timeout or 0) + 2 * WORKER_REPORT_INTERVAL)
