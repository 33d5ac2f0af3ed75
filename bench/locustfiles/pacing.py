"""Iterations that do nothing, paced one of three ways, for the scheduler's CPU per iteration (bench/arrival.py).

--pacing scheduler: the open model (generators/open_model.py) at --pace-rate over all users;
--pacing wait_time: the tracking generator's former open model, a per-user wait_time schedule;
--pacing due: the open model as the tracking generator takes it: one user at a time takes every instant
due at its wake-up (Scheduler.acquire_due), so one wake-up starts the instants of a loop's turn;
--pacing wait_time_even: the former pacing with the users' phases spread over its period (user k
first wakes k/rate after the start), so the loop wakes as often as for an evenly spaced plan (the former
pacing's users, spawned at once, wake together: 20 wake-ups a second at 2,000/s with 100 users);
--pacing idle: users that never iterate (the start-up and idle-loop CPU to subtract).
"""

from __future__ import annotations

import logging
import time

from gevent.lock import Semaphore
from locust import User, events, task
from locust.exception import StopUser

import monitors.locust_plugin  # noqa: F401  - the monitor, as every locustfile of the suite has it
from generators import open_model

log = logging.getLogger("pacing")
count = {"n": 0}
window = {}  # process CPU time at spawning complete (the plan's start) and when the run stops


@events.init_command_line_parser.add_listener
def _options(parser) -> None:
    parser.add_argument("--pacing", default="scheduler", choices=("scheduler", "due", "wait_time", "wait_time_even",
                                                                  "idle"))
    parser.add_argument("--pace-rate", type=float, default=1000.0)


@events.test_start.add_listener
def _start(environment, **_kw) -> None:
    o = environment.parsed_options
    if o.pacing in ("scheduler", "due"):
        open_model.for_users(environment, "noop", o.pace_rate)


@events.spawning_complete.add_listener
def _spawned(**_kw) -> None:
    window["cpu0"], window["n0"] = time.process_time(), count["n"]


@events.test_stopping.add_listener
def _stopping(**_kw) -> None:
    window["cpu1"], window["n1"] = time.process_time(), count["n"]


@events.quitting.add_listener
def _done(environment, **_kw) -> None:
    # The CPU between the plan's start and the stop: the start-up's CPU, which varies by more than the
    # pacing's on a busy machine, stays out.
    cpu = window.get("cpu1", 0.0) - window.get("cpu0", 0.0)
    log.warning("pacing iterations: %d; in the window: %d iterations, %.6f s CPU", count["n"],
                window.get("n1", 0) - window.get("n0", 0), cpu)


turn = Semaphore()
spawned = {"n": 0}


class Paced(User):
    def on_start(self) -> None:
        self._next = time.monotonic()
        o = self.environment.parsed_options
        if o.pacing == "wait_time_even":  # user k's phase: k instants of the whole rate after the first
            self._next += spawned["n"] / o.pace_rate
            spawned["n"] += 1
        if o.pacing == "scheduler":
            open_model.attach(self, open_model.named(self.environment, "noop"))

    def wait_time(self) -> float:
        o = self.environment.parsed_options
        if o.pacing == "idle":
            return 3600.0
        if o.pacing == "due":
            return 0.0
        # The former tracking pacing (locustfiles/tracking.py before the scheduler), verbatim in effect.
        users = max(self.environment.runner.user_count, 1)
        self._next = max(self._next + users / o.pace_rate, time.monotonic())
        return max(self._next - time.monotonic(), 0.0)

    @task
    def iterate(self) -> None:
        pacing = self.environment.parsed_options.pacing
        if pacing == "idle":
            return
        if pacing == "due":  # as locustfiles/tracking.py's Generator.send_due
            scheduler = open_model.named(self.environment, "noop").scheduler
            idle_since = time.monotonic()
            with turn:
                while tickets := scheduler.acquire_due(1000, idle_since):
                    count["n"] += len(tickets)
                    idle_since = time.monotonic()
            raise StopUser()
        if pacing == "scheduler":
            open_model.begin(self)  # as every per-user task: its instant starts here
        count["n"] += 1
