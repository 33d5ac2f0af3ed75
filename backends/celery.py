"""celery: events as LMS `send_event` tasks LPUSHed onto a Celery queue on Redis (the Aspects default).

Sampler: queue lengths on the broker, plus event-routing-backends' batch and dead lists.

The reference monitor counted only the two default queues, so "lag 0" could be declared while
ERB still held up to a batch of events in `events_router_queue_xapi`. Here every configured
queue and list counts toward the backlog, read in one pipelined round trip.
"""

from __future__ import annotations

from backends.base import RedisSender, check_redis
from openedx_erb import wire
from plumbing import redis_util
from plumbing.redaction import where

NAME = "celery"
REFERENCE_CONSUMER = "targets.pipeline"
KEY_FIGURES = ("lag", "batch_queue_length", "dead_queue_length")  # of a sample, in the monitor's console line and web tab

DEFAULT_QUEUES = ("edx.lms.core.default", "edx.cms.core.default", "edx.lms.core.high", "edx.lms.core.high_mem",
                  "edx.cms.core.high", "edx.cms.core.low")
DEFAULT_ERB_LISTS = ("events_router_queue_xapi", "dead_queue_xapi")


def _csv(value) -> tuple[str, ...]:
    if isinstance(value, (list, tuple)):
        value = ",".join(value)
    return tuple(x.strip() for x in (value or "").split(",") if x.strip())


def add_arguments(group) -> None:
    group.add_argument("--celery-queue", default="edx.lms.core.default", env_var="LOCUST_CELERY_QUEUE",
                       help="celery: queue the send_event tasks go to (default %(default)s)")


def add_monitor_arguments(group) -> None:
    group.add_argument("--celery-broker-url", default=None, env_var="LOCUST_CELERY_BROKER_URL",
                       help="Redis broker of the LMS/CMS Celery workers (default: LOCUST_REDIS_URL or "
                            "redis://127.0.0.1:6379/0)")
    group.add_argument("--celery-queues", default=",".join(DEFAULT_QUEUES), env_var="LOCUST_CELERY_QUEUES",
                       help="comma-separated Celery queues to count")
    group.add_argument("--erb-redis-url", default=None, env_var="LOCUST_ERB_REDIS_URL",
                       help="Redis holding event-routing-backends' batch lists (default: the broker URL)")
    group.add_argument("--erb-lists", default=",".join(DEFAULT_ERB_LISTS), env_var="LOCUST_ERB_LISTS",
                       help="comma-separated ERB batch and dead-letter lists (counted as backlog)")


class Sampler:
    name = "celery"

    def __init__(self, broker_url: str, queues=DEFAULT_QUEUES, erb_url: str | None = None,
                 erb_lists=DEFAULT_ERB_LISTS) -> None:
        self.queues, self.erb_lists = _csv(queues), _csv(erb_lists)
        if not self.queues:
            raise ValueError("--celery-queues is empty; expected at least one queue name")
        self.broker = redis_util.connect(broker_url)
        self.erb = redis_util.connect(erb_url) if erb_url and erb_url != broker_url else self.broker

    def _llen(self, client, keys) -> dict[str, int]:
        pipe = client.pipeline(transaction=False)
        for key in keys:
            pipe.llen(key)
        return dict(zip(keys, (int(n) for n in pipe.execute()), strict=True))

    def sample(self) -> dict:
        queues = self._llen(self.broker, self.queues)
        lists = self._llen(self.erb, self.erb_lists) if self.erb_lists else {}
        batch = sum(n for k, n in lists.items() if not k.startswith("dead"))
        dead = sum(n for k, n in lists.items() if k.startswith("dead"))
        return {
            "lms_queue_length": sum(n for k, n in queues.items() if ".lms." in k),
            "cms_queue_length": sum(n for k, n in queues.items() if ".cms." in k),
            "queues": queues,
            "batch_queue_length": batch,
            "dead_queue_length": dead,
            "lists": lists,
            # Drained means nothing left anywhere: queues, ERB's batch buffer and its dead letters.
            "lag": sum(queues.values()) + batch + dead,
        }

    def backlog(self, sample: dict) -> int | None:
        return sample["lag"]

    def close(self) -> None:
        self.broker.close()
        if self.erb is not self.broker:
            self.erb.close()


def _url(options) -> str:
    return options.celery_broker_url or redis_util.default_url()


def check_reachable(options) -> None:
    check_redis(NAME, _url(options))


def sender(environment, options) -> RedisSender:
    queue = options.celery_queue

    def command(event: dict) -> tuple[tuple, int]:
        payload = wire.celery_message(["event_transformer", event], queue)
        return ("LPUSH", queue, payload), len(payload)

    return RedisSender(environment, NAME, command, url=_url(options))


def sampler(options) -> Sampler:
    """The queues of --celery-queues, plus the one this run's tasks go to (--celery-queue, where the
    tracking generator runs): a queue the tasks never reach reads as empty, so leaving theirs out
    would make the monitor call the pipeline drained while they wait."""
    broker = _url(options)
    queues = _csv(options.celery_queues)
    own = getattr(options, "celery_queue", None)
    if own and own not in queues:
        queues = (*queues, own)
    return Sampler(broker, queues, options.erb_redis_url or broker, options.erb_lists)


def entry(opts: dict) -> str:
    return where(opts.get("celery_broker_url"))
