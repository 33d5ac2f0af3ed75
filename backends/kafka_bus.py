"""kafka_bus: events as Avro tracking_log messages on the Kafka topic of openedx-event-bus-kafka.

Sampler: per-partition lag of a consumer group on `<prefix>-analytics`.

Standard Kafka only: the group's committed offsets and each partition's high watermark, read
by one long-lived client that never joins the group. The reference monitor built a new client
per sample and asked about group `analytics-service`, which the Aspects consumer does not use
(it is `event_routing_backends`), so its lag never drained. librdkafka calls block, so they
run off the gevent loop (plumbing.blocking).

A group that has committed nothing on the topic and has no member (its consumers never joined) has
no lag to measure: unknown (None, `lag_unknown` says why), never 0, nor everything retained (which
would hold every run without a consumer to its drain timeout). Once a member joined, what it has
not committed counts from the partition's start (event-bus-kafka reads from the earliest offset).
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from functools import partial
from typing import ClassVar

import gevent

from backends.base import Sender, add_event_bus_arguments, event_bus_topic
from openedx_erb import wire
from plumbing import kafka_conf
from plumbing.blocking import run_blocking
from plumbing.options import OptionError, require
from plumbing.redaction import where

NAME = "kafka_bus"
REFERENCE_CONSUMER = "targets.pipeline"
KEY_FIGURES = ("lag",)  # of a sample, in the monitor's console line and web tab
log = logging.getLogger("tracking")


def add_arguments(group) -> None:
    group.add_argument("--kafka-key", default="user", env_var="LOCUST_KAFKA_KEY",
                       help="kafka_bus message key: user (spreads partitions) or name (Open edX's tracking_log.name, "
                            "the two-partition hot spot)")
    group.add_argument("--kafka-value-schema-id", type=int, default=1, env_var="LOCUST_KAFKA_VALUE_SCHEMA_ID",
                       help="kafka_bus: Schema Registry id of the TrackingLogData schema in the messages (default %(default)s)")
    group.add_argument("--kafka-key-schema-id", type=int, default=2, env_var="LOCUST_KAFKA_KEY_SCHEMA_ID",
                       help="kafka_bus: Schema Registry id of the key schema (default %(default)s)")
    group.add_argument("--schema-registry-url", default="", env_var="LOCUST_SCHEMA_REGISTRY_URL",
                       help="kafka_bus: register the schemas in this Confluent Schema Registry (subjects "
                            "<topic>-value and <topic>-key) and use its ids instead of the two options above")


def add_monitor_arguments(group) -> None:
    add_event_bus_arguments(group)
    group.add_argument("--kafka-bus-brokers", default=None, env_var="LOCUST_KAFKA_BUS_BROKERS",
                       help="Kafka bootstrap servers of the event bus (default: KAFKA_BROKERS or 127.0.0.1:9092)")
    group.add_argument("--kafka-bus-topic", default=None, env_var="LOCUST_KAFKA_BUS_TOPIC",
                       help="topic, if not <event-bus-prefix>-analytics")
    group.add_argument("--kafka-bus-group", default="event_routing_backends", env_var="LOCUST_KAFKA_BUS_GROUP",
                       help="consumer group whose lag is measured (default %(default)s)")


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
        from confluent_kafka.admin import AdminClient

        self.admin = AdminClient({**kafka_conf.client_config(brokers), "log_level": 0})

    def _read(self) -> dict:
        from confluent_kafka import TopicPartition

        meta = self.consumer.list_topics(self.topic, timeout=self.timeout)
        tmeta = meta.topics.get(self.topic)
        if tmeta is None or tmeta.error is not None or not tmeta.partitions:
            return {"topic": self.topic, "group": self.group, "partitions": [], "lag": 0, "exists": False}
        tps = [TopicPartition(self.topic, p) for p in sorted(tmeta.partitions)]
        committed = self.consumer.committed(tps, timeout=self.timeout)
        parts, total, unknown = [], 0, ""
        for tp in committed:
            low, high = self.consumer.get_watermark_offsets(TopicPartition(self.topic, tp.partition),
                                                            timeout=self.timeout, cached=False)
            if high < 0:
                lag = None
                unknown = f"no high watermark for {self.topic} partition {tp.partition}"
            elif tp.offset < 0:  # the group has committed nothing here: everything retained is behind
                lag = high - low
            else:
                lag = max(high - tp.offset, 0)
            parts.append({"partition": tp.partition, "lag": lag, "committed": tp.offset, "high": high})
            total += lag or 0
        if all(tp.offset < 0 for tp in committed) and not self._members():
            unknown = f"consumer group {self.group} has committed nothing on {self.topic} and has no member"
        if unknown:
            return {"topic": self.topic, "group": self.group, "partitions": parts, "lag": None,
                    "lag_unknown": unknown}
        return {"topic": self.topic, "group": self.group, "partitions": parts, "lag": total}

    def _members(self) -> int:
        """Members of the group now (0 while it does not exist; a failed answer counts as none)."""
        from confluent_kafka import KafkaException

        try:
            desc = self.admin.describe_consumer_groups([self.group], request_timeout=self.timeout)[self.group]
            return len(desc.result().members)
        except KafkaException:
            return 0

    def sample(self) -> dict:
        return run_blocking(self._read)

    def backlog(self, sample: dict) -> int | None:
        return sample["lag"]  # None: unknown (lag_unknown says why)

    def close(self) -> None:
        run_blocking(self.consumer.close)


def _topic(options) -> str:
    return options.kafka_bus_topic or event_bus_topic(options)


def check_options(o) -> None:
    require(o.kafka_key in ("user", "name"), f"--kafka-key {o.kafka_key!r}: expected user or name")


def check_reachable(o) -> None:
    """The brokers answer; then, with --schema-registry-url, the schemas are registered (their ids used)."""
    from confluent_kafka.admin import AdminClient

    try:
        conf = kafka_conf.client_config(o.kafka_bus_brokers)
        run_blocking(AdminClient({**conf, "log_level": 0}).list_topics, timeout=10)
    except Exception as exc:  # noqa: BLE001 - ValueError (settings) or KafkaException (reason)
        raise OptionError(f"kafka_bus: brokers unreachable or refusing us: {exc}") from None
    if o.schema_registry_url:
        _register_schemas(o)


def _register_schemas(o) -> None:
    from backends.schema_registry import register_tracking_schemas

    topic = _topic(o)
    try:
        o.kafka_value_schema_id, o.kafka_key_schema_id = register_tracking_schemas(o.schema_registry_url, topic)
    except ValueError as exc:
        raise OptionError(f"kafka_bus: {exc}") from None
    log.info("kafka_bus: schemas registered for %s: value id %d, key id %d", topic, o.kafka_value_schema_id,
             o.kafka_key_schema_id)


def sender(environment, o) -> KafkaSender:
    return KafkaSender(environment, NAME, conf=kafka_conf.client_config(o.kafka_bus_brokers), topic=_topic(o),
                       key=o.kafka_key, value_schema_id=o.kafka_value_schema_id, key_schema_id=o.kafka_key_schema_id)


def sampler(options) -> Sampler:
    return Sampler(options.kafka_bus_brokers, _topic(options), options.kafka_bus_group)


def entry(opts: dict) -> str:
    return where(opts.get("kafka_bus_brokers"))


@dataclass
class KafkaSender(Sender):
    """kafka_bus: Avro in Confluent framing, event-bus-kafka's headers; delivery reports via poll(0)."""

    queues: ClassVar[bool] = True  # produce() queues; librdkafka sends and reports later
    takes_tracking_log: ClassVar[bool] = True
    conf: dict = field(default_factory=dict)
    topic: str = "dev-analytics"
    key: str = "user"
    value_schema_id: int = 1
    key_schema_id: int = 2
    source: str = "openedx/lms/web"
    max_in_flight: int = 20_000  # messages produced, not yet acknowledged; a sender with this many is full
    _producer: object = None
    _pump: object = None
    _value_head: bytes = b""
    _key_head: bytes = b""

    def __post_init__(self) -> None:
        from confluent_kafka import Producer

        # reconnect.backoff.max.ms: librdkafka's default (10 s) would leave a restarted broker unused
        # for up to 10 s; at most 1 s between connection attempts (KAFKA_PROPERTIES can change it).
        self._producer = Producer({"reconnect.backoff.max.ms": 1000, **self.conf, "linger.ms": 5, "acks": "all",
                                   "log_level": 0})
        # Confluent's framing (magic byte, schema id) before every value and key, made once.
        self._value_head = wire.confluent_wire(self.value_schema_id, b"")
        self._key_head = wire.confluent_wire(self.key_schema_id, b"")
        self._batch_stats()
        self._pump = gevent.spawn(self._poll)

    def _poll(self) -> None:
        stats = self._stats
        while True:
            n = self._producer.poll(0)  # the delivery reports: each success joins the batch, timed as it comes
            stats.flush()
            gevent.sleep(0 if n else 0.002)

    def send(self, event: dict | wire.TrackingLog, planned: float | None = None) -> None:
        t = wire.tracking_log(event)
        value = wire.tracking_log_avro(t, self._value_head)
        key = self._key_head + wire.avro_string(t.name if self.key == "name" else t.username)
        headers = wire.kafka_headers(self.source)
        # The event's delivery report: a partial of one function (one object and its arguments) rather than
        # a closure per message (a function, its tuple and seven cells, all kept until the report): the
        # send measured 3–7 µs cheaper (docs/bench.md). The event's timing starts here, ends in _delivered.
        report = partial(_delivered, self, t.name, time.time(), time.perf_counter(), len(value), planned)
        while True:
            try:
                self._producer.produce(self.topic, value, key=key, headers=headers, on_delivery=report)
                return
            except BufferError:  # librdkafka's queue is full: let deliveries drain without blocking
                gevent.sleep(0.001)

    def outstanding(self) -> int:
        return len(self._producer)

    def room(self) -> int:
        return max(self.max_in_flight - len(self._producer), 0)

    def wait_for_room(self) -> bool:
        # librdkafka's queue holds 100,000 messages by default: seconds of latency at a broker's limit.
        waited = False
        while len(self._producer) >= self.max_in_flight:
            waited = True
            gevent.sleep(0.001)
        return waited

    def close(self, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while len(self._producer) and time.monotonic() < deadline:
            gevent.sleep(0.01)
        if len(self._producer):
            # Still undelivered (e.g. the broker is down): purged, their delivery reports count them as
            # failed requests instead of leaving them out of the stats.
            log.warning("kafka_bus: %d events undelivered %g s after the end; counted as failed", len(self._producer),
                        timeout)
            self._producer.purge()
            while len(self._producer) and time.monotonic() < deadline + 10:
                gevent.sleep(0.01)
        self._pump.kill(block=True)
        self._producer.poll(0)  # reports that came after the pump's last turn
        self._stats.flush()


def _delivered(sender: KafkaSender, name: str, start: float, t0: float, size: int, planned: float | None, err,
               _msg) -> None:
    """One event's delivery report (librdkafka calls it from poll()): its timing ends here."""
    if err is None:  # the hot path: Sender._fire's success, inline
        sender._stats.add((name, (time.perf_counter() - t0) * 1000, size,
                           None if planned is None else (time.time() - planned) * 1000))
    else:
        sender._fire(name, start, t0, size, RuntimeError(str(err)), planned)
