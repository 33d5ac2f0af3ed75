"""Users that record one request while they stop (an ack that comes in as a device disconnects),
for the final CSV test; a task request every 0.2 s before that. No server."""

import time

from locust import User, constant, task

import monitors.locust_plugin  # noqa: F401  - as every locustfile of the suite


class Closing(User):
    wait_time = constant(0.2)

    def _record(self, kind: str, name: str) -> None:
        self.environment.events.request.fire(request_type=kind, name=name, response_time=1, response_length=0,
                                             exception=None, context={}, start_time=time.time())

    @task
    def work(self) -> None:
        self._record("TASK", "work")

    def on_stop(self) -> None:
        self._record("ACK", "while stopping")
