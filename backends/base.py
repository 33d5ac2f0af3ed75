"""What the backend modules share: the sender base class, the Redis sender and check that
celery and redis_bus both use, and the event bus option of redis_bus and kafka_bus.

A sender puts one tracking event into a pipeline without blocking the gevent loop. Each
`send(event)` is one Locust request (type EVENT, named by event name): timed from the call to
the broker's answer (Redis reply, Kafka delivery report, the write). A failure fires
`events.request` at once; a sender with a loop of its own (Redis's writer, Kafka's delivery pump)
adds each success, timed as it comes, to a `plumbing.bulk_stats.RequestBatch` that its loop
flushes into the statistics once per turn (a request event per event cost more than the rest of
the send). This module stays Locust-free: it reports through the environment it is given.
"""

from __future__ import annotations

import logging
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import ClassVar

import gevent
from gevent.event import Event

from openedx_erb.wire import TrackingLog
from plumbing.bulk_stats import RequestBatch
from plumbing.options import OptionError
from plumbing.redaction import redact
from plumbing.request_context import PLANNED_START

log = logging.getLogger("tracking")

REQUEST_TYPE = "EVENT"


@dataclass
class Sender:
    environment: object
    backend: str
    # send() only queues (the write and its reply happen later, elsewhere): the open model then starts
    # many instants per wake-up (generators/tracking.py). A sender whose send() does the work keeps
    # one instant per user, so a saturated generator drops instants instead of falling behind.
    queues: ClassVar[bool] = False
    # send() takes the events as the event bus carries them (openedx_erb.wire.TrackingLog: the generator
    # makes them without building dicts); an event dict is encoded first.
    takes_tracking_log: ClassVar[bool] = False
    # Successes waiting for the sender's loop to flush them (_batch_stats()); None: each one fires.
    _stats: RequestBatch | None = field(default=None, init=False, repr=False)

    def _batch_stats(self) -> None:
        """Report successes in batches: the sender's loop calls self._stats.flush() once per turn."""
        self._stats = RequestBatch(self.environment, REQUEST_TYPE)

    def _fire(self, name: str, start: float, t0: float, size: int, exc: Exception | None,
              planned: float | None = None) -> None:
        if exc is None and self._stats is not None:
            self._stats.add((name, (time.perf_counter() - t0) * 1000, size,
                             None if planned is None else (time.time() - planned) * 1000))
            return
        # Open model: the event's planned instant, for latency measured from it (coordinated omission).
        context = {} if planned is None else {PLANNED_START: planned}
        self.environment.events.request.fire(request_type=REQUEST_TYPE, name=name,
                                             response_time=(time.perf_counter() - t0) * 1000, response_length=size,
                                             exception=exc, context=context, start_time=start)

    def outstanding(self) -> int:
        return 0

    def room(self) -> int:
        """Events send() takes now without queueing beyond the sender's bound."""
        return 1_000_000

    def wait_for_room(self) -> bool:
        """Block (cooperatively) while the sender's queue is full; True if it had to."""
        return False

    def close(self, timeout: float = 30.0) -> None:
        """Stop sending; a sender whose events are still unconfirmed waits at most `timeout` seconds for
        them (the generator's --delivery-timeout), then counts them as failed."""


@dataclass
class RedisSender(Sender):
    """A sender through Redis, pipelined: `command(event)` gives the backend's one command (celery
    LPUSHes a task message onto its queue, redis_bus XADDs to its stream) and the payload's size.

    send() queues the event and returns; one greenlet owns one connection and, whenever the
    connection is free and events are queued, writes them all (at most `batch` per write) in one
    go, then reads their replies in order. At low rates each event goes alone; under load the
    batch grows with what queued during the previous round trip. Each event is a request timed
    from its send() to its own reply; one connection keeps the sends in their order. Nothing is
    retried: a reply lost with the connection fails its event (Redis may still have stored it,
    never the reverse), and the next write reconnects.
    """

    queues: ClassVar[bool] = True
    command: Callable[[dict], tuple[tuple, int]]
    url: str = ""
    batch: int = 1000  # most commands per write
    max_queued: int = 2_000  # events waiting for the connection; a sender with this many is full
    _queue: deque = field(default_factory=deque)
    _in_flight: int = 0

    def __post_init__(self) -> None:
        import redis
        from redis.backoff import NoBackoff
        from redis.retry import Retry

        # Retry(…, 0): redis-py would re-send a command after a lost connection, and an event whose
        # first send reached Redis would be stored twice.
        pool = redis.ConnectionPool.from_url(self.url, socket_timeout=10, socket_connect_timeout=10,
                                             health_check_interval=30, retry=Retry(NoBackoff(), 0))
        self._conn = pool.make_connection()
        self._errors = (redis.ConnectionError, redis.TimeoutError)
        self._response_error = redis.ResponseError
        self._wake, self._room = Event(), Event()
        self._batch_stats()
        self._writer = gevent.spawn(self._run)

    def send(self, event, planned: float | None = None) -> None:
        start, t0 = time.time(), time.perf_counter()
        name = event.name if isinstance(event, TrackingLog) else event["name"]
        try:
            args, size = self.command(event)
        except Exception as exc:  # noqa: BLE001 - an event that cannot be encoded is a failed request
            self._fire(name, start, t0, 0, exc, planned)
            return
        self._queue.append((name, start, t0, planned, resp_command(args), size))
        if not self._wake.is_set():
            self._wake.set()

    def room(self) -> int:
        return max(self.max_queued - len(self._queue), 0)

    def wait_for_room(self) -> bool:
        waited = False
        while len(self._queue) >= self.max_queued:
            waited = True
            self._room.clear()
            self._room.wait()
        return waited

    def _run(self) -> None:
        queue = self._queue
        while True:
            self._wake.wait()
            self._wake.clear()
            while queue:
                items = [queue.popleft() for _ in range(min(len(queue), self.batch))]
                self._in_flight = len(items)
                try:
                    self._write(items)
                finally:
                    self._in_flight = 0
                    self._stats.flush()
                self._room.set()

    def _write(self, items: list) -> None:
        conn = self._conn
        try:
            try:
                conn.check_health()  # a PING after 30 s idle: a connection the server closed is replaced
            except self._errors:
                pass  # disconnected: the write below connects again
            conn.send_packed_command([b"".join([it[4] for it in items])], check_health=False)
        except Exception as exc:  # noqa: BLE001 - unreachable, refused, timed out: the batch's events fail
            conn.disconnect()
            self._fail(items, exc)
            return
        for i, (name, start, t0, planned, _args, size) in enumerate(items):
            try:
                conn.read_response(disable_decoding=True)
            except self._response_error as exc:  # this command only: the connection stays in step
                self._fire(name, start, t0, 0, exc, planned)
                continue
            except Exception as exc:  # noqa: BLE001 - the connection is gone: the rest of the batch fails
                conn.disconnect()
                self._fail(items[i:], exc)
                return
            self._fire(name, start, t0, size, None, planned)

    def _fail(self, items: list, exc: Exception) -> None:
        for name, start, t0, planned, _args, _size in items:
            self._fire(name, start, t0, 0, exc, planned)

    def outstanding(self) -> int:
        return len(self._queue) + self._in_flight

    def close(self, timeout: float = 30.0) -> None:
        # The events still queued go out first (the caller waited --delivery-timeout for them already).
        while self._queue or self._in_flight:
            if self._writer.dead:
                self._fail(list(self._queue), RuntimeError("the sender stopped"))
                self._queue.clear()
                break
            gevent.sleep(0.005)
        self._writer.kill(block=True)
        self._stats.flush()
        self._conn.disconnect()


def resp_command(args: tuple) -> bytes:
    """One command in the Redis protocol (RESP2: an array of bulk strings), for a pipelined write. redis-py's
    packer costs ~12 µs per XADD in pure Python; this ~2 µs."""
    out = [b"*%d\r\n" % len(args)]
    for a in args:
        b = a if isinstance(a, bytes) else str(a).encode()
        out.append(b"$%d\r\n%b\r\n" % (len(b), b))
    return b"".join(out)


def check_redis(backend: str, url: str) -> None:
    """Fail before the run, in one line, when the Redis that events enter cannot be reached."""
    import redis

    try:
        client = redis.Redis.from_url(url, socket_connect_timeout=3, socket_timeout=3)
        client.ping()
        client.close()
    except (redis.RedisError, ValueError) as exc:
        raise OptionError(f"{backend}: Redis {redact(url)} unreachable: {exc}") from None


def add_event_bus_arguments(group) -> None:
    """The event bus option of both redis_bus and kafka_bus: each adds it, the first one to do so registers it."""
    if group.get_default("event_bus_prefix") is not None:
        return
    group.add_argument("--event-bus-prefix", default="dev", env_var="LOCUST_EVENT_BUS_PREFIX",
                       help="EVENT_BUS_TOPIC_PREFIX: the stream/topic is <prefix>-analytics (default %(default)s)")


def event_bus_topic(options) -> str:
    """The stream (redis_bus) or topic (kafka_bus) Open edX sends tracking events to: <prefix>-analytics."""
    return f"{options.event_bus_prefix}-analytics"
