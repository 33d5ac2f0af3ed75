"""The Kafka producers' machinery (generators.kafka_run runs it; locustfiles/kafka.py is the entry
point): one non-blocking producer per process, an optional end-to-end latency reader, and the message
budget shared by all users. It takes a `ProducerConfig` (built from the --kafka-* options by
generators.kafka_run), not the options themselves.

Nothing here blocks the gevent loop: `produce()` only queues (librdkafka sends from its own
threads), delivery reports are drained by a greenlet calling `poll(0)`, the latency reader uses
`consume(timeout=0)`, and calls that wait on the network (flush, offsets for a time, close) go
to gevent's native thread pool.
"""

from __future__ import annotations

import itertools
import json
import logging
import os
import socket
import time
from dataclasses import dataclass
from pathlib import Path

import gevent

from generators import open_model
from lifecycle import budget
from monitors import e2e
from monitors.kafka_latency import ArrivalWindows, LatencyStats, consumer_config, format_window, handle_message
from monitors.locust_plugin import record_sample
from plumbing import kafka_conf
from plumbing.blocking import run_blocking
from plumbing.bulk_stats import BulkRequests

log = logging.getLogger("generators.kafka")


@dataclass(frozen=True)
class ProducerConfig:
    """What a process's producer needs to know of the run (generators.kafka_run.producer_config)."""

    brokers: str | None  # bootstrap servers; None: the suite's default (plumbing.kafka_conf)
    topic: str
    messages: int = 0  # over all processes; 0: until stopped
    key_field: str = "identifier"
    request_events: bool = False  # one events.request per delivery instead of bulk statistics
    linger_ms: float = 5.0
    acks: str = "all"
    rate: float = 0.0  # open model: messages/s over all processes; 0: flat out
    processes: int = 0  # worker processes sharing `messages` (0: as the runner says)
    e2e_timeout: float = 60.0  # after the last delivery, seconds to wait for the output messages
    search_start_rate: float | None = None  # a capacity search steps a live rate from here


def load_records(path: str | Path) -> list[dict]:
    """The data file: a JSON array of objects, cycled through by the producers."""
    try:
        data = json.loads(Path(path).read_text())
    except OSError as exc:
        raise ValueError(f"--kafka-data-file {str(path)!r} cannot be read: {exc.strerror}") from None
    except ValueError as exc:
        raise ValueError(f"--kafka-data-file {str(path)!r} is not JSON: {exc}") from None
    if not isinstance(data, list) or not data or not all(isinstance(r, dict) for r in data):
        raise ValueError(f"--kafka-data-file {str(path)!r}: expected a non-empty JSON array of objects")
    return data


def encode_record(record: dict, key_field: str) -> tuple[str, bytes | None]:
    """The record's JSON without its closing brace (ready for per-message fields) and its key."""
    body = json.dumps(record, separators=(",", ":"))[:-1]
    key_value = record.get(key_field)
    return body + ("," if record else ""), None if key_value is None else str(key_value).encode()


class KafkaLoad:
    """Per-process state: the producer, the budget, the delivery-report pump, the latency reader."""

    def __init__(self, environment, config: ProducerConfig, records: list[dict]) -> None:
        from confluent_kafka import Producer

        self.env, self.config, self.records = environment, config, records
        self.conf = kafka_conf.client_config(config.brokers)
        self.errors: list[str] = []
        # LocalRunner has a worker_index too (always 0); a worker learns the count from the master.
        index, count = budget.process_share(environment, config.processes)
        self.index, self.count = index, count
        self.budget = budget.share(config.messages, index, count) if config.messages else None
        self.sent = self.failed = 0
        self._delivered_events = 0  # deliveries reported one event each (--kafka-request-events)
        self.producer_id = f"{socket.gethostname()}-{os.getpid()}"
        self._next_seq = 0
        self.topic = config.topic
        # Each record's JSON up to the per-message fields, with this producer's id, encoded once.
        self._encoded = itertools.cycle([((body + f'"_producer":"{self.producer_id}","_seq":').encode(), key)
                                         for body, key in (encode_record(r, config.key_field)
                                                           for r in records)])
        self.bulk = None if config.request_events else BulkRequests(environment, "PRODUCE", self.topic)
        # One producer-wide delivery callback: a callback per produce() costs an allocation each.
        self.producer = Producer({**self.conf, "linger.ms": config.linger_ms, "acks": config.acks,
                                  "log_level": 0, "error_cb": self._error, "on_delivery": self._delivery_callback()})
        self.finishing = False
        self.reader: LatencyReader | None = None
        self.pump = gevent.spawn(self._pump)
        self.model: open_model.OpenModel | None = None
        if config.search_start_rate is not None:  # the search steps the rate (loadtesting.rate_capacity) until done
            self.budget = None
            self.model = open_model.OpenModel(environment, self.topic, config.search_start_rate, live=True)
        elif open_model.enabled(environment, config.rate):
            # The plan holds this process's share of --kafka-messages: each is produced or dropped.
            self.model = open_model.OpenModel(environment, self.topic, config.rate, config.messages or None)
            gevent.spawn(self._finish_when_planned)

    def _error(self, err) -> None:
        # librdkafka retries by itself; say each distinct problem once instead of printing its log.
        text = str(err)
        if text not in self.errors:
            log.warning("kafka: %s", text)
        self.errors.append(text)

    # -- producing ---------------------------------------------------------------------------
    def take(self) -> bool:
        """True while this process's budget has messages left."""
        return self.budget is None or self.sent < self.budget

    def send_many(self, limit: int) -> int:
        """Produce up to `limit` messages (fewer when the budget ends); returns how many."""
        n = limit if self.budget is None else min(limit, self.budget - self.sent)
        # The hot loop of the generator: locals only, the record's JSON encoded once, each message
        # only appending its identity and send time.
        produce, topic, encoded = self.producer.produce, self.topic, self._encoded
        tail = b',"_sent_ms":%d}' % int(time.time() * 1000)  # a burst takes well under a millisecond
        seq, size = self._next_seq, 0
        for _ in range(n):
            head, key = next(encoded)
            value = b"%b%d%b" % (head, seq, tail)
            seq += 1
            size += len(value)
            try:
                produce(topic, value, key)
            except BufferError:
                self._produce_when_room(value, key)
        self._next_seq = seq
        self.sent += n
        if self.bulk is not None:
            self.bulk.bytes += size  # failures take theirs back in _report_one
        if self.budget is not None and self.sent >= self.budget and not self.finishing:
            self.finishing = True
            gevent.spawn(self.finish)
        return n

    def send(self) -> None:
        self.send_many(1)

    def send_planned(self, ticket) -> None:
        """Open model: one message for one planned instant; its delivery is a PRODUCE request whose
        context holds the instant (`planned_start`), so it is reported one by one, not in bulk."""
        head, key = next(self._encoded)
        value = b"%b%d%b" % (head, self._next_seq, b',"_sent_ms":%d}' % int(time.time() * 1000))
        self._next_seq += 1
        context = open_model.context_of(ticket)
        fire, topic = self.env.events.request.fire, self.topic

        def delivered(err, msg) -> None:
            if err is None:
                self._delivered_events += 1
            else:
                self.failed += 1
            fire(request_type="PRODUCE", name=topic, response_time=(msg.latency() or 0.0) * 1000,
                 response_length=len(value), exception=None if err is None else RuntimeError(str(err)),
                 context=context)

        while True:
            try:
                self.producer.produce(topic, value, key, on_delivery=delivered)
                break
            except BufferError:  # librdkafka's queue is full: let deliveries drain, without blocking
                self.producer.poll(0)
                gevent.sleep(0.001)
        self.sent += 1

    def _finish_when_planned(self) -> None:
        """Open model: the plan ran out (every message of the budget produced or dropped) -> finish."""
        if open_model.wait_until_planned_sent(self.model, lambda: self.sent) and not self.finishing:
            self.finishing = True
            self.finish()

    def _produce_when_room(self, value: bytes, key: bytes | None) -> None:
        while True:  # librdkafka's queue is full: let deliveries drain, without blocking the loop
            self.producer.poll(0)
            gevent.sleep(0.001)
            try:
                self.producer.produce(self.topic, value, key)
                return
            except BufferError:
                continue

    def _delivery_callback(self):
        """The delivery report handler; successes only append librdkafka's own produce() → delivery
        latency to the bulk statistics (the hot path, kept to a closure over locals)."""
        ok = None if self.bulk is None else self.bulk.pending.append

        def delivered(err, msg) -> None:
            if err is None and ok is not None:
                ok(msg.latency() or 0.0)
            else:
                self._report_one(err, msg)

        return delivered

    def _report_one(self, err, msg) -> None:
        ms = (msg.latency() or 0.0) * 1000
        if err is None:
            self._delivered_events += 1
            exc = None
        else:
            self.failed += 1
            if self.bulk is not None:
                self.bulk.bytes -= len(msg)
            exc = RuntimeError(str(err))
        self.env.events.request.fire(request_type="PRODUCE", name=self.topic, response_time=ms,
                                     response_length=len(msg), exception=exc, context={})

    @property
    def delivered(self) -> int:
        bulk = self.bulk
        return self._delivered_events + (bulk.count + len(bulk.pending) if bulk is not None else 0)

    def _pump(self) -> None:
        while True:
            n = self.producer.poll(0)
            if self.bulk is not None:
                self.bulk.flush()
            gevent.sleep(0 if n else 0.002)

    def outstanding(self) -> int:
        return len(self.producer)

    def flush(self, timeout: float = 30.0) -> int:
        deadline = time.monotonic() + timeout
        while self.outstanding() and time.monotonic() < deadline:
            gevent.sleep(0.005)  # the pump greenlet fires the delivery reports meanwhile
        self.producer.poll(0)
        if self.bulk is not None:
            self.bulk.flush()
        return self.outstanding()

    def finish(self) -> None:
        """Budget spent: wait for deliveries (and end-to-end results), then end this process's run."""
        left = self.flush()
        log.info("kafka: %d messages sent, %d delivered, %d failed%s", self.sent, self.delivered, self.failed,
                 f", {left} undelivered" if left else "")
        if self.reader is not None:
            self.reader.wait_for(self.delivered, self.config.e2e_timeout)
        budget.spent(self.env, "kafka", sent=self.sent, delivered=self.delivered)

    def close(self) -> None:
        self.flush(10)
        self.pump.kill(block=False)
        if self.reader is not None:
            self.reader.close()


class LatencyReader:
    """Reads the pipeline's output topic from the test's start time; each delta goes into the E2E row
    named for the topic (monitors.e2e: outside Aggregated)."""

    def __init__(self, environment, conf: dict, topic: str, index: int, count: int, start_ms: int,
                 arrivals: ArrivalWindows | None = None) -> None:
        from confluent_kafka import Consumer

        self.env, self.topic = environment, topic
        self.arrivals = arrivals  # exact latencies by arrival second (a capacity search's windows)
        self.consumer = Consumer(consumer_config(conf, f"kafka-latency-{topic}"))
        self.windows: dict[str, dict] = {}  # the newest full window of each size
        self.stats = LatencyStats(on_window=self._window, on_total=log.info)
        self.start_ms = start_ms
        self.older = 0  # output messages from before the test (timestamp lookups may land early)
        run_blocking(self._assign, index, count, start_ms)
        self.greenlet = gevent.spawn(self._read)

    def _window(self, window: dict) -> None:
        """A full latency window: logged, and its figures go with the monitor's next sample (the
        web UI's chart of windows)."""
        log.info(format_window(window))
        self.windows[window["window"]] = window
        record_sample(self.env, "kafka_latency", dict(self.windows))

    def _assign(self, index: int, count: int, start_ms: int) -> None:
        from confluent_kafka import TopicPartition

        meta = self.consumer.list_topics(self.topic, timeout=10)
        partitions = sorted(meta.topics[self.topic].partitions) if self.topic in meta.topics else []
        if not partitions or meta.topics[self.topic].error is not None:
            raise ValueError(f"--kafka-latency-topic {self.topic!r} does not exist")
        # Each process reads its own share of the partitions, so every message is counted once.
        mine = [TopicPartition(self.topic, p, start_ms) for p in partitions if p % count == index]
        self.consumer.assign(self.consumer.offsets_for_times(mine, timeout=10) if mine else [])

    def _read(self) -> None:
        last_commit = time.monotonic()
        env = self.env
        while True:
            batch = self.consumer.consume(num_messages=1000, timeout=0)
            deltas = []
            for msg in batch:
                if msg.error():
                    continue
                if msg.timestamp()[1] < self.start_ms:
                    self.older += 1
                    continue
                delta = handle_message(self.stats, msg)
                if delta is not None:
                    e2e.record(env, self.topic, delta, len(msg.value() or b""))  # outside Aggregated
                    deltas.append(delta)
            if self.arrivals is not None and deltas:
                self.arrivals.add_many(deltas, time.time())
            if batch and time.monotonic() - last_commit > 1:
                self.consumer.commit(asynchronous=True)
                last_commit = time.monotonic()
            gevent.sleep(0 if batch else 0.005)

    def received(self) -> int:
        s = self.stats
        return s.count + s.negative + s.in_seconds + s.invalid + s.duplicates

    def wait_for(self, expected: int, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while self.received() < expected and time.monotonic() < deadline:
            gevent.sleep(0.05)
        log.info("kafka e2e: %s", self.stats.total_line())
        if self.received() < expected:
            log.warning("kafka e2e: %d of %d messages came out of the pipeline within %.0f s",
                        self.received(), expected, timeout)

    def close(self) -> None:
        self.greenlet.kill(block=False)
        run_blocking(self.consumer.close)
