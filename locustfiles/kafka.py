"""Kafka producers for a stream pipeline, with optional end-to-end latency from its output topic.

    locust -f locustfiles/kafka.py --config conf/kafka.conf --headless -u 10 -r 10 --kafka-messages 100000
    locust -f locustfiles/kafka.py --headless --processes 2 --kafka-latency-topic performance-test-out …

The options, the brokers' check and the run's producers are in generators.kafka_run (docs/kafka.md).
"""

from __future__ import annotations

from locust import User, task
from locust.exception import StopUser

import loadtesting.locust_plugin  # noqa: F401  - capacity search, sar capture, phases
import monitors.locust_plugin  # noqa: F401  - pipeline monitor, ClickHouse sink, thresholds
from generators import kafka_run, open_model
from generators.kafka_producer import KafkaLoad


class KafkaProducerUser(User):
    """Produces records as fast as allowed, or one at each planned instant of --kafka-rate."""

    burst = 64  # messages per task call when producing flat out
    ticket = None
    load: KafkaLoad | None = None

    def on_start(self) -> None:
        self.load = load = kafka_run.load(self.environment)
        open_model.attach(self, load.model if load is not None else None)  # closed model: no-op

    def wait_time(self) -> float:  # the closed model's: flat out
        return 0.0

    @task
    def produce(self) -> None:
        load = self.load
        if load is None or not load.take():
            raise StopUser()
        if load.model is not None:
            ticket = open_model.begin(self)
            if ticket is None:
                raise StopUser()
            load.send_planned(ticket)
        else:
            # Flat out: a burst per task call, so Locust's per-task overhead is paid once per burst.
            load.send_many(self.burst)
