"""Senders: put one tracking event into a pipeline, without blocking the gevent loop.

Each sender's `send(event)` fires one Locust request (type EVENT, named by event name): timed
from the call to the broker's answer (Redis reply, Kafka delivery report, the write).
"""

from __future__ import annotations

import base64
import json
import logging
import os
import time
from dataclasses import dataclass, field

import gevent

import openedx_erb
from openedx_erb import wire

log = logging.getLogger("tracking")

BACKENDS = ("celery", "redis_bus", "kafka_bus", "vector", "ralph")
REQUEST_TYPE = "EVENT"
PLANNED_START = "planned_start"  # as locustfiles.open_model.PLANNED_START (this module stays Locust-free)


@dataclass
class Sender:
    environment: object
    backend: str

    def _fire(self, name: str, start: float, t0: float, size: int, exc: Exception | None,
              planned: float | None = None) -> None:
        # Open model: the event's planned instant, for latency measured from it (coordinated omission).
        context = {} if planned is None else {PLANNED_START: planned}
        self.environment.events.request.fire(request_type=REQUEST_TYPE, name=name,
                                             response_time=(time.perf_counter() - t0) * 1000, response_length=size,
                                             exception=exc, context=context, start_time=start)

    def outstanding(self) -> int:
        return 0

    def close(self) -> None:
        pass


@dataclass
class RedisSender(Sender):
    """celery (LPUSH a task message onto the queue) and redis_bus (XADD to the stream)."""

    url: str = ""
    queue: str = "edx.lms.core.default"
    stream: str = "dev-analytics"
    maxlen: int = 10_000
    source: str = "openedx/lms/web"
    _client: object = None

    def __post_init__(self) -> None:
        import redis

        # One connection per user sending at once: redis-py 8's pool stops at 100 by default, and the
        # open model's pool of users is often larger (MaxConnectionsError, a failed send).
        self._client = redis.Redis.from_url(self.url, socket_timeout=10, health_check_interval=30,
                                            max_connections=100_000)

    def send(self, event: dict, planned: float | None = None) -> None:
        start, t0 = time.time(), time.perf_counter()
        try:
            if self.backend == "celery":
                payload = wire.celery_message(["event_transformer", event], self.queue)
                self._client.lpush(self.queue, payload)
            else:
                fields = wire.redis_bus_fields(event, self.source)
                payload = fields["event_data"]
                self._client.xadd(self.stream, fields, maxlen=self.maxlen or None, approximate=True)
        except Exception as exc:  # noqa: BLE001 - a failed send is a failed request, never a crash
            self._fire(event["name"], start, t0, 0, exc, planned)
            return
        self._fire(event["name"], start, t0, len(payload), None, planned)

    def close(self) -> None:
        self._client.close()


@dataclass
class KafkaSender(Sender):
    """kafka_bus: Avro in Confluent framing, event-bus-kafka's headers; delivery reports via poll(0)."""

    conf: dict = field(default_factory=dict)
    topic: str = "dev-analytics"
    key: str = "user"
    value_schema_id: int = 1
    key_schema_id: int = 2
    source: str = "openedx/lms/web"
    _producer: object = None
    _pump: object = None

    def __post_init__(self) -> None:
        from confluent_kafka import Producer

        # reconnect.backoff.max.ms: librdkafka's default (10 s) would leave a restarted broker unused
        # for up to 10 s; at most 1 s between connection attempts (KAFKA_PROPERTIES can change it).
        self._producer = Producer({"reconnect.backoff.max.ms": 1000, **self.conf, "linger.ms": 5, "acks": "all",
                                   "log_level": 0})
        self._pump = gevent.spawn(self._poll)

    def _poll(self) -> None:
        while True:
            n = self._producer.poll(0)
            gevent.sleep(0 if n else 0.002)

    def send(self, event: dict, planned: float | None = None) -> None:
        value = wire.confluent_wire(self.value_schema_id, wire.tracking_log_avro(event))
        key_text = event["name"] if self.key == "name" else event["context"].get("username", "")
        key = wire.confluent_wire(self.key_schema_id, wire.avro_string(key_text))
        start, t0 = time.time(), time.perf_counter()
        name = event["name"]

        def delivered(err, _msg) -> None:
            self._fire(name, start, t0, len(value), None if err is None else RuntimeError(str(err)), planned)

        while True:
            try:
                self._producer.produce(self.topic, value, key=key, headers=wire.kafka_headers(self.source),
                                       on_delivery=delivered)
                return
            except BufferError:  # librdkafka's queue is full: let deliveries drain without blocking
                gevent.sleep(0.001)

    def outstanding(self) -> int:
        return len(self._producer)

    def close(self) -> None:
        deadline = time.monotonic() + 30
        while len(self._producer) and time.monotonic() < deadline:
            gevent.sleep(0.01)
        if len(self._producer):
            # Still undelivered (e.g. the broker is down): purged, their delivery reports count them as
            # failed requests instead of leaving them out of the stats.
            log.warning("kafka_bus: %d events undelivered 30 s after the end; counted as failed", len(self._producer))
            self._producer.purge()
            while len(self._producer) and time.monotonic() < deadline + 10:
                gevent.sleep(0.01)
        self._pump.kill(block=False)


@dataclass
class VectorSender(Sender):
    """vector: append `[xapi_tracking]` (and optionally `[tracking]`) lines to the log Vector tails.

    The xAPI lines are what the LMS logs: event-routing-backends' statements (openedx_erb), built here.
    """

    path: str = ".run/tracking.log"
    lines: str = "xapi"
    _fd: int = -1

    def __post_init__(self) -> None:
        os.makedirs(os.path.dirname(os.path.abspath(self.path)), exist_ok=True)
        # O_APPEND: one write() per line keeps lines whole with several writer processes.
        self._fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        if self.lines in ("xapi", "both"):
            openedx_erb.setup()  # Django for ERB now, not inside the first user's send

    def send(self, event: dict, planned: float | None = None) -> None:
        start, t0 = time.time(), time.perf_counter()
        text = ""
        if self.lines in ("tracking", "both"):
            text += wire.tracking_line(event)
        if self.lines in ("xapi", "both"):
            try:
                text += "".join(wire.xapi_line(s) for s in openedx_erb.statements(event))
            except openedx_erb.NotTransformable as exc:  # the LMS would log no xapi line: a failed event
                self._fire(event["name"], start, t0, 0, exc, planned)
                return
        data = text.encode()
        try:
            os.write(self._fd, data)
        except OSError as exc:
            self._fire(event["name"], start, t0, 0, exc, planned)
            return
        self._fire(event["name"], start, t0, len(data), None, planned)

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1


@dataclass
class RalphSender(Sender):
    """ralph: xAPI statements (event-routing-backends' own, openedx_erb) POSTed to an LRS in batches,
    "this many or this long" as event-routing-backends batches them, several POSTs in flight.

    Each event is an EVENT request timed from its creation to the LRS's answer for its batch
    (batching wait included: that is what the pipeline adds); each POST is also an LRS request.
    """

    url: str = "http://127.0.0.1:8100"
    username: str = ""
    password: str = ""
    batch_size: int = 100
    batch_interval: float = 1.0
    concurrency: int = 4
    _client: object = None
    _buffer: list = field(default_factory=list)
    _pool: object = None
    _timer: object = None
    _oldest: float = 0.0

    def __post_init__(self) -> None:
        import gevent.pool
        from geventhttpclient import URL, HTTPClient

        url = URL(self.url.rstrip("/"))
        self._path = url.path.rstrip("/") + "/xAPI/statements"
        self._client = HTTPClient.from_url(url, concurrency=self.concurrency, connection_timeout=10,
                                           network_timeout=60)
        token = base64.b64encode(f"{self.username}:{self.password}".encode()).decode()
        self._headers = {"Authorization": f"Basic {token}", "Content-Type": "application/json",
                         "X-Experience-API-Version": "1.0.3"}
        self._pool = gevent.pool.Pool(self.concurrency)
        openedx_erb.setup()
        self._timer = gevent.spawn(self._tick)

    def send(self, event: dict, planned: float | None = None) -> None:
        start, t0 = time.time(), time.perf_counter()
        try:
            statements = openedx_erb.statements(event)
        except openedx_erb.NotTransformable as exc:
            self._fire(event["name"], start, t0, 0, exc, planned)
            return
        if not self._buffer:
            self._oldest = time.monotonic()
        self._buffer.append((event["name"], start, t0, statements, planned))
        if len(self._buffer) >= self.batch_size:
            self._flush()

    def _tick(self) -> None:
        # The timer: a partial batch never waits for the next event longer than batch_interval.
        while True:
            gevent.sleep(min(self.batch_interval, 0.1))
            if self._buffer and time.monotonic() - self._oldest >= self.batch_interval:
                self._flush()

    def _flush(self) -> None:
        batch, self._buffer = self._buffer, []
        if batch:
            self._pool.spawn(self._post, batch)  # waits for a free slot: back-pressure on the users

    def _post(self, batch: list) -> None:
        body = json.dumps([s for b in batch for s in b[3]], separators=(",", ":")).encode()
        start, t0 = time.time(), time.perf_counter()
        exc: Exception | None = None
        try:
            resp = self._client.post(self._path, body=body, headers=self._headers)
            answer = resp.read()
            if resp.status_code != 200:
                exc = RuntimeError(f"LRS answered {resp.status_code}: {answer[:200].decode(errors='replace')}")
        except Exception as err:  # noqa: BLE001 - a failed POST fails its events, never the run
            exc = err
        self.environment.events.request.fire(request_type="LRS", name="POST /xAPI/statements",
                                             response_time=(time.perf_counter() - t0) * 1000,
                                             response_length=len(body), exception=exc, context={}, start_time=start)
        size = len(body) // len(batch)
        for name, ev_start, ev_t0, _statements, planned in batch:
            self._fire(name, ev_start, ev_t0, 0 if exc else size, exc, planned)

    def outstanding(self) -> int:
        return len(self._buffer) + len(self._pool)

    def close(self) -> None:
        self._flush()
        self._pool.join(timeout=60)
        self._timer.kill(block=False)
        self._client.close()
