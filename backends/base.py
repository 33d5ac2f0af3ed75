"""What the backend modules share: the sender base class, and the Redis sender and check that
celery and redis_bus both use.

A sender puts one tracking event into a pipeline without blocking the gevent loop. Each
`send(event)` fires one Locust request (type EVENT, named by event name): timed from the call to
the broker's answer (Redis reply, Kafka delivery report, the write). This module stays Locust-free:
it fires requests through the environment it is given.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass

from openedx_erb import wire
from plumbing.options import OptionError
from plumbing.redaction import redact

log = logging.getLogger("tracking")

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


def check_redis(backend: str, url: str) -> None:
    """Fail before the run, in one line, when the Redis that events enter cannot be reached."""
    import redis

    try:
        client = redis.Redis.from_url(url, socket_connect_timeout=3, socket_timeout=3)
        client.ping()
        client.close()
    except (redis.RedisError, ValueError) as exc:
        raise OptionError(f"{backend}: Redis {redact(url)} unreachable: {exc}") from None
