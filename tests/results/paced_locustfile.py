"""Users paced at a fixed rate each, so requests/s stays the same when the endpoint slows down."""

from locust import FastHttpUser, constant_throughput, task

import loadtesting.locust_plugin  # noqa: F401
import monitors.locust_plugin  # noqa: F401


class Paced(FastHttpUser):
    wait_time = constant_throughput(1)

    @task
    def work(self) -> None:
        self.client.get("/work")
