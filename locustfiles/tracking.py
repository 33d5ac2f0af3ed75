"""Open edX tracking events into an analytics pipeline, with a per-event end-to-end check.

    locust -f locustfiles/tracking.py --headless -u 20 -r 20 --pipeline-backend redis_bus --num-events 10000
    locust -f locustfiles/tracking.py --headless --pipeline-backend celery --events-per-second 500 --run-until-killed

The options, the per-process generator and the end-to-end check are in generators.tracking
(docs/tracking.md).
"""

from __future__ import annotations

from locust import User, task
from locust.exception import StopUser

import loadtesting.locust_plugin  # noqa: F401  - capacity search, sar capture, phases
import monitors.locust_plugin  # noqa: F401  - pipeline monitor, ClickHouse sink, thresholds
from generators import open_model, tracking


class TrackingUser(User):
    """Sends tracking events: every --sleep-time seconds, or at the planned instants of
    --events-per-second (open model: a pool of users taking instants from the scheduler; with a
    sender that queues, one of them at a time takes all the instants due at a wake-up)."""

    ticket = None
    gen: tracking.Generator | None = None

    def on_start(self) -> None:
        self.gen = gen = tracking.generator(self.environment)
        if gen is not None and gen.model is not None and not gen.sender.queues:
            open_model.attach(self, gen.model)  # one instant per user and iteration (its wait_time)

    def wait_time(self) -> float:  # the closed model's; in the open model a queueing sender's users wait in send_due
        return self.gen.pause() if self.gen is not None else 0.0

    @task
    def emit(self) -> None:
        gen = self.gen
        if gen is None:
            raise StopUser()
        if gen.model is not None and gen.sender.queues:
            gen.send_due()
            return
        ticket = open_model.begin(self)
        if (gen.model is not None and ticket is None) or not gen.take():
            raise StopUser()
        gen.sender.wait_for_room()
        gen.send_one(ticket)
