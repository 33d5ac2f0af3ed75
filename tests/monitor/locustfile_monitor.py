"""A locustfile for the monitor's tests: users report requests without any server."""

import random
import time

from locust import User, constant, events, task

import monitors.locust_plugin  # noqa: F401


@events.init_command_line_parser.add_listener
def _options(parser) -> None:
    parser.add_argument("--fail-every", type=int, default=0, help="every Nth request fails")


class Reporter(User):
    wait_time = constant(0.05)

    @task
    def work(self) -> None:
        self.n = getattr(self, "n", 0) + 1
        every = self.environment.parsed_options.fail_every
        failed = every and self.n % every == 0
        self.environment.events.request.fire(
            request_type="TEST", name="work", response_time=random.uniform(5, 15), response_length=0,
            exception=RuntimeError("planned failure") if failed else None, context={}, start_time=time.time(),
        )
