"""Iterations that do nothing, paced one of three ways, for the scheduler's CPU per iteration (bench/arrival.py).

--pacing scheduler: the open model (generators/open_model.py) at --pace-rate over all users;
--pacing wait_time: the tracking generator's former open model, a per-user wait_time schedule;
--pacing idle: users that never iterate (the start-up and idle-loop CPU to subtract).
"""

from __future__ import annotations

import logging
import time

from locust import User, events, task

import monitors.locust_plugin  # noqa: F401  - the monitor, as every locustfile of the suite has it
from generators import open_model

log = logging.getLogger("pacing")
count = {"n": 0}


@events.init_command_line_parser.add_listener
def _options(parser) -> None:
    parser.add_argument("--pacing", default="scheduler", choices=("scheduler", "wait_time", "idle"))
    parser.add_argument("--pace-rate", type=float, default=1000.0)


@events.test_start.add_listener
def _start(environment, **_kw) -> None:
    o = environment.parsed_options
    if o.pacing == "scheduler":
        open_model.for_users(environment, "noop", o.pace_rate)


@events.quitting.add_listener
def _done(environment, **_kw) -> None:
    log.warning("pacing iterations: %d", count["n"])


class Paced(User):
    def on_start(self) -> None:
        self.ticket = None
        self._next = time.monotonic()
        open_model.attach(self, open_model.named(self.environment, "noop"))

    def wait_time(self) -> float:
        o = self.environment.parsed_options
        if o.pacing == "idle":
            return 3600.0
        # The former tracking pacing (locustfiles/tracking.py before the scheduler), verbatim in effect.
        users = max(self.environment.runner.user_count, 1)
        self._next = max(self._next + users / o.pace_rate, time.monotonic())
        return max(self._next - time.monotonic(), 0.0)

    @task
    def iterate(self) -> None:
        if self.environment.parsed_options.pacing == "idle":
            return
        count["n"] += 1
