"""What the backend modules share: the sender base class, the Redis sender and check that
celery and redis_bus both use, and the event bus option of redis_bus and kafka_bus.

A sender puts one tracking event into a pipeline without blocking the gevent loop. Each
`send(event)` fires one Locust request (type EVENT, named by event name): timed from the call to
the broker's answer (Redis reply, Kafka delivery report, the write). This module stays Locust-free:
it fires requests through the environment it is given.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

from plumbing.options import OptionError
from plumbing.redaction import redact
from plumbing.request_context import PLANNED_START

log = logging.getLogger("tracking")

REQUEST_TYPE = "EVENT"


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
    """A sender through Redis: `put(client, event)` is the backend's one command (celery LPUSHes a task
    message onto its queue, redis_bus XADDs to its stream) and returns the payload's size in bytes."""

    put: Callable[[object, dict], int]
    url: str = ""
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
            size = self.put(self._client, event)
        except Exception as exc:  # noqa: BLE001 - a failed send is a failed request, never a crash
            self._fire(event["name"], start, t0, 0, exc, planned)
            return
        self._fire(event["name"], start, t0, size, None, planned)

    def close(self) -> None:
        self._client.close()


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
                       help="EVENT_BUS_TOPIC_PREFIX: the stream/topic is <prefix>-analytics (default dev)")


def event_bus_topic(options) -> str:
    """The stream (redis_bus) or topic (kafka_bus) Open edX sends tracking events to: <prefix>-analytics."""
    return f"{options.event_bus_prefix}-analytics"
