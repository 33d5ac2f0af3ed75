"""Open-model users that fall behind their plan on purpose, for the percentile tests.

Each user plans an iteration every --plan-gap seconds but each takes longer than that, so
iterations start ever later than planned. Every request event carries the planned instant
(``context["planned_start"]``, as the arrival-rate scheduler sets it) and a service time that is
really waited; `fast` requests are spread over 1-60 ms, `slow` ones wait at least 147 ms and report
exactly 147, whose Locust bucket (150) lies above the slowest request. With LATENCY_LOG set, each process appends every
service time it reported, in the order Locust logged them, one JSON line per request.
"""

import json
import os
import random
import time

import gevent
from locust import User, constant, events, task

import loadtesting.locust_plugin  # noqa: F401
import monitors.locust_plugin  # noqa: F401


@events.init_command_line_parser.add_listener
def _options(parser) -> None:
    parser.add_argument("--plan-gap", type=float, default=0.01, help="seconds between a user's planned instants")


class Late(User):
    wait_time = constant(0)

    def on_start(self) -> None:
        self.t0, self.i = time.time(), 0
        path = os.environ.get("LATENCY_LOG")
        self.log = open(path, "a") if path else None  # noqa: SIM115 - closed in on_stop

    def on_stop(self) -> None:
        if self.log:
            self.log.close()

    @task
    def work(self) -> None:
        planned = self.t0 + self.i * self.environment.parsed_options.plan_gap
        self.i += 1
        if planned > time.time():
            gevent.sleep(planned - time.time())  # never early: a late start is the only distortion
        name = "slow" if self.i % 10 == 0 else "fast"
        start = time.time()
        gevent.sleep(0.147 if name == "slow" else random.uniform(0.001, 0.060))
        ms = 147.0 if name == "slow" else (time.time() - start) * 1000
        self.environment.events.request.fire(request_type="PLAN", name=name, response_time=ms, response_length=0,
                                             exception=None, context={"planned_start": planned}, start_time=start)
        if self.log:
            self.log.write(json.dumps({"name": name, "ms": ms, "planned": planned, "fired": start + ms / 1000}) + "\n")
            self.log.flush()
