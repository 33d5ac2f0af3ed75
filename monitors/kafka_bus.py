"""Kafka event bus sampler: per-partition lag of a consumer group on `<prefix>-analytics`.

Standard Kafka only: the group's committed offsets and each partition's high watermark, read
by one long-lived client that never joins the group. The reference monitor built a new client
per sample and asked about group `analytics-service`, which the Aspects consumer does not use
(it is `event_routing_backends`), so its lag never drained. librdkafka calls block, so they
run off the gevent loop (plumbing.blocking).
"""

from __future__ import annotations

from plumbing import kafka_conf
from plumbing.blocking import run_blocking


def add_arguments(group) -> None:
    group.add_argument("--kafka-bus-brokers", default=None, env_var="LOCUST_KAFKA_BUS_BROKERS",
                       help="Kafka bootstrap servers of the event bus (default: KAFKA_BROKERS or 127.0.0.1:9092)")
    group.add_argument("--kafka-bus-topic", default=None, env_var="LOCUST_KAFKA_BUS_TOPIC",
                       help="topic, if not <event-bus-prefix>-analytics")
    group.add_argument("--kafka-bus-group", default="event_routing_backends", env_var="LOCUST_KAFKA_BUS_GROUP",
                       help="consumer group whose lag is measured (default event_routing_backends)")


class Sampler:
    name = "kafka_bus"

    def __init__(self, brokers: str | None, topic: str = "dev-analytics", group: str = "event_routing_backends",
                 timeout: float = 10.0) -> None:
        from confluent_kafka import Consumer

        self.topic, self.group, self.timeout = topic, group, timeout
        conf = kafka_conf.client_config(brokers)
        # log_level 0: librdkafka would print a line per reconnect attempt (every 50 ms) while the broker
        # is down; a failed sample is reported by the monitor instead.
        conf.update({"group.id": group, "enable.auto.commit": False, "log_level": 0})
        self.consumer = Consumer(conf)

    def _read(self) -> dict:
        from confluent_kafka import TopicPartition

        meta = self.consumer.list_topics(self.topic, timeout=self.timeout)
        tmeta = meta.topics.get(self.topic)
        if tmeta is None or tmeta.error is not None or not tmeta.partitions:
            return {"topic": self.topic, "group": self.group, "partitions": [], "lag": 0, "exists": False}
        tps = [TopicPartition(self.topic, p) for p in sorted(tmeta.partitions)]
        committed = self.consumer.committed(tps, timeout=self.timeout)
        parts, total = [], 0
        for tp in committed:
            low, high = self.consumer.get_watermark_offsets(TopicPartition(self.topic, tp.partition),
                                                            timeout=self.timeout, cached=False)
            if high < 0:
                lag = 0
            elif tp.offset < 0:  # the group has committed nothing here: everything retained is behind
                lag = high - low
            else:
                lag = max(high - tp.offset, 0)
            parts.append({"partition": tp.partition, "lag": lag, "committed": tp.offset, "high": high})
            total += lag
        return {"topic": self.topic, "group": self.group, "partitions": parts, "lag": total}

    def sample(self) -> dict:
        return run_blocking(self._read)

    def backlog(self, sample: dict) -> int | None:
        return sample["lag"]

    def close(self) -> None:
        run_blocking(self.consumer.close)


def from_options(options) -> Sampler:
    topic = options.kafka_bus_topic or f"{options.event_bus_prefix}-analytics"
    return Sampler(options.kafka_bus_brokers, topic, options.kafka_bus_group)
