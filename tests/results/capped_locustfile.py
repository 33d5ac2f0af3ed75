"""Users that never wait, so their count is the concurrency the capped endpoint sees."""

from locust import FastHttpUser, constant, task

import loadtesting.locust_plugin  # noqa: F401
import monitors.locust_plugin  # noqa: F401


class Busy(FastHttpUser):
    wait_time = constant(0)

    @task
    def work(self) -> None:
        self.client.get("/work")
