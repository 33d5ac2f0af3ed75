"""A generator with nothing to send, for the open-model tests: each iteration is one NOOP request.

--noop-rate is the target (tasks/s over all processes), --noop-work the seconds an iteration keeps
its user busy, --noop-iterations a limit over all processes, --noop-start the seconds each user
spends in on_start before it takes instants (as a device connecting), --noop-stop-at N stops the run as
the N-th instant is handed over (the stop then runs in the yield Locust makes before that task). An
iteration yields to the loop before its request is recorded, as a real one does. A request listener
checks that every request carries its planned instant and never starts before it, and logs the tally.
"""

from __future__ import annotations

import logging
import time

import gevent
from locust import User, events, task
from locust.exception import StopUser

import monitors.locust_plugin  # noqa: F401  - the monitor, as every locustfile of the suite has it
from generators import open_model

log = logging.getLogger("noop")
tally = {"requests": 0, "planned": 0, "early": 0, "handed": 0}


@events.init_command_line_parser.add_listener
def _options(parser) -> None:
    parser.add_argument("--noop-rate", type=float, default=0.0)
    parser.add_argument("--noop-work", type=float, default=0.0)
    parser.add_argument("--noop-iterations", type=int, default=0)
    parser.add_argument("--noop-start", type=float, default=0.0)
    parser.add_argument("--noop-stop-at", type=int, default=0)


@events.test_start.add_listener
def _start(environment, **_kw) -> None:
    o = environment.parsed_options
    if open_model.enabled(environment, o.noop_rate) and environment.runner.__class__.__name__ != "MasterRunner":
        open_model.OpenModel(environment, "noop", o.noop_rate, o.noop_iterations or None, per_user=True)


@events.request.add_listener
def _check(request_type, start_time=None, context=None, **_kw) -> None:
    if request_type != "NOOP":
        return
    tally["requests"] += 1
    planned = (context or {}).get(open_model.PLANNED_START)
    if planned is not None:
        tally["planned"] += 1
        tally["early"] += start_time < planned - 1e-6


@events.test_stop.add_listener
def _tally(environment, **_kw) -> None:
    if tally["requests"]:
        log.info("noop tally: %d requests, %d with planned_start, %d before it", tally["requests"],
                 tally["planned"], tally["early"])


class Noop(User):
    def on_start(self) -> None:
        o = self.environment.parsed_options
        if o.noop_start:
            gevent.sleep(o.noop_start)
        open_model.attach(self, open_model.named(self.environment, "noop"))
        if o.noop_stop_at:
            take = self.wait_time

            def wait_time() -> float:
                delay = take()
                tally["handed"] += 1
                if tally["handed"] == o.noop_stop_at:
                    gevent.spawn(self.environment.runner.quit)  # runs before this user's task
                return delay

            self.wait_time = wait_time

    def wait_time(self) -> float:
        return 1.0

    @task
    def work(self) -> None:
        if open_model.begin(self) is None:
            raise StopUser()
        gevent.sleep(0)
        start = time.time()
        self.environment.events.request.fire(request_type="NOOP", name="noop", response_time=0, response_length=0,
                                             exception=None, context=self.context(), start_time=start)
        if self.environment.parsed_options.noop_work:
            gevent.sleep(self.environment.parsed_options.noop_work)
