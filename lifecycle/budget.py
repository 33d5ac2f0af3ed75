"""A budget shared by the load-generating processes, and the end of a run whose budget is spent.

With --processes or --master/--worker, each worker generates its `share` of a budget (--num-events,
--kafka-messages, an open model's iterations); `process_share` says which part is this process's
(the master sends the count of workers before their users start). A generator whose share is spent
and delivered calls `spent(environment, name)`: a worker tells the master, which ends the run once
every worker has spent its share; a local run stops and quits by itself.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

import gevent
from locust import events
from locust.runners import WORKER_REPORT_INTERVAL, MasterRunner, WorkerRunner
from locust.stats import CSV_STATS_INTERVAL_SEC

from plumbing import run_state

log = logging.getLogger("lifecycle")

WORKERS_MESSAGE = "lifecycle_workers"  # master -> workers: how many processes share the budget
SPENT_MESSAGE = "budget_spent"  # worker -> master: this worker spent its share of a generator's budget


@dataclass
class BudgetRun:
    """This process's part in the shared budget (plumbing.run_state)."""

    worker_count: int = 0  # on a worker: the load-generating processes, from the master
    spent: dict[str, set[str]] = field(default_factory=dict)  # master: generator -> workers done


def share(total: int, index: int, count: int) -> int:
    """Process `index`'s part of `total` when `count` processes share it: each unit counted once."""
    return total // count + (1 if index < total % count else 0)


def process_share(environment, fallback: int = 0) -> tuple[int, int]:
    """(index, count) of this process among the load-generating ones. A worker learns the count
    from the master at test start; before that, `fallback` (a generator's --*-processes) or
    --processes."""
    runner = environment.runner
    if isinstance(runner, WorkerRunner):
        o = environment.parsed_options
        count = run_state.of(environment, BudgetRun).worker_count or fallback or (o.processes if o else 0) or 1
        return runner.worker_index, max(1, count)
    return 0, 1


def spent(environment, name: str, **figures) -> None:
    """This process spent (and delivered) its share of generator `name`'s budget: end the run.
    A worker tells the master; a local run stops its users, lets Locust write its CSV files once
    more (a periodic greenlet) with the final counts, then quits."""
    runner = environment.runner
    if isinstance(runner, WorkerRunner):
        runner.send_message(SPENT_MESSAGE, {"name": name, **figures})
    elif runner is not None:
        runner.stop()
        if not keeps_process(environment):
            gevent.spawn_later(CSV_STATS_INTERVAL_SEC + 0.5, runner.quit)


def keeps_process(environment) -> bool:
    """A web UI (not --headless) outlives its tests: a spent budget stops the test, the process stays
    for the next one (loadtesting.webui_run writes the test's run folder); headless, the run quits."""
    o = environment.parsed_options
    return environment.web_ui is not None and o is not None and not o.headless


@events.init.add_listener
def _init(environment, runner=None, **_kw) -> None:
    if isinstance(runner, MasterRunner):
        runner.register_message(SPENT_MESSAGE, _worker_spent)
    elif isinstance(runner, WorkerRunner):
        runner.register_message(WORKERS_MESSAGE, _workers)


@events.test_start.add_listener
def _test_start(environment, **_kw) -> None:
    runner = environment.runner
    if isinstance(runner, MasterRunner):
        # Sent before the spawn messages: every worker knows the count when its test_start runs.
        runner.send_message(WORKERS_MESSAGE, runner.worker_count)
    run_state.of(environment, BudgetRun).spent = {}


def _workers(environment, msg, **_kw) -> None:
    run_state.of(environment, BudgetRun).worker_count = int(msg.data)


def _worker_spent(environment, msg, **_kw) -> None:
    """A worker spent its share; once every worker did, the run ends after their last stats reports."""
    done = run_state.of(environment, BudgetRun).spent.setdefault(msg.data.get("name", ""), set())
    if msg.node_id in done:
        return
    done.add(msg.node_id)
    log.debug("budget: worker %s spent its share (%s)", msg.node_id, msg.data)
    runner = environment.runner
    if len(done) == runner.worker_count:
        gevent.spawn_later(WORKER_REPORT_INTERVAL + 0.5, runner.stop if keeps_process(environment) else runner.quit)
