"""redis_bus: events XADDed to the Redis stream of openedx-event-bus-redis.

Sampler: `XINFO STREAM <prefix>-analytics FULL` — length, lag and pending per group.

`lag` (entries not yet delivered to a group) is missing before Redis 7 and nil when Redis
cannot compute it (entries deleted or trimmed past the group's position). Then it is counted
directly: the entries after the group's last-delivered id (XRANGE, bounded by --redis-bus-count-limit;
beyond that the figure is marked inexact). Backlog = lag + pending (delivered, not acknowledged).

A stream that no consumer group reads has no lag to measure: its entries wait for a reader that may
never come (a pipeline whose consumers never joined) or be read by plain XREADs the stream does not
record. Its lag is unknown (None, with `lag_unknown` saying why), never 0 ("drained"), nor its length
(which would hold every run without a consumer to its drain timeout).
"""

from __future__ import annotations

import logging
import time

from backends.base import RedisSender, add_event_bus_arguments, check_redis, event_bus_topic
from openedx_erb import wire
from plumbing import redis_util
from plumbing.redaction import where

log = logging.getLogger(__name__)

NAME = "redis_bus"
REFERENCE_CONSUMER = "targets.pipeline"
KEY_FIGURES = ("total_events", "lag", "pending")  # of a sample, in the monitor's console line and web tab


def add_arguments(group) -> None:
    group.add_argument("--redis-stream-maxlen", type=int, default=10_000, env_var="LOCUST_REDIS_STREAM_MAXLEN",
                       help="redis_bus: XADD MAXLEN ~ (EVENT_BUS_REDIS_STREAM_MAX_LEN, default 10000; 0: none)")


def add_monitor_arguments(group) -> None:
    group.add_argument("--event-bus-redis-url", default=None, env_var="LOCUST_EVENT_BUS_REDIS_URL",
                       help="Redis of the event bus (default: LOCUST_REDIS_URL or redis://127.0.0.1:6379/0)")
    add_event_bus_arguments(group)
    group.add_argument("--event-bus-stream", default=None, env_var="LOCUST_EVENT_BUS_STREAM",
                       help="stream name, if not <prefix>-analytics")
    group.add_argument("--redis-bus-count-limit", type=int, default=1_000_000, env_var="LOCUST_REDIS_BUS_COUNT_LIMIT",
                       help="most entries counted by XRANGE when Redis gives no lag (default %(default)s)")


def _s(value) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _id(value) -> tuple[int, int]:
    """A stream entry ID as a comparable (ms, seq); 0-0 when absent."""
    ms, _, seq = _s(value or "0-0").partition("-")
    return int(ms), int(seq or 0)


def _get(d: dict, key: str, default=None):
    """redis-py decodes some XINFO keys and leaves others (consumers) as bytes."""
    return d.get(key, d.get(key.encode(), default))


class Sampler:
    name = "redis_bus"

    def __init__(self, url: str, stream: str = "dev-analytics", count_limit: int = 1_000_000) -> None:
        self.url, self.stream, self.count_limit = url, stream, count_limit
        self.client = redis_util.connect(url)
        self._trimmed: dict[str, int] = {}  # per group: entries trimmed before it read them
        self._trimmed_before: dict[str, int] = {}  # per group: trimmed unread when sampling began
        self._said_trimmed: dict[str, tuple[int, float]] = {}  # per group: (trimmed, when) last warned

    def _count_after(self, last_id: str) -> tuple[int, bool]:
        """Entries after `last_id` (exclusive), counted in pages; (count, exact)."""
        count, start = 0, f"({last_id}"
        while count < self.count_limit:
            page = self.client.xrange(self.stream, min=start, max="+", count=10_000)
            if not page:
                return count, True
            count += len(page)
            start = f"({_s(page[-1][0])}"
        return count, False

    def sample(self) -> dict:
        if not self.client.exists(self.stream):
            # Not created yet (no event produced): nothing outstanding, and say so.
            return {"stream": self.stream, "total_events": 0, "lag": 0, "pending": 0, "groups": [], "exists": False}
        info = self.client.xinfo_stream(self.stream, full=True)
        groups, lag_total, pending_total, exact = [], 0, 0, True
        if not info.get("groups"):
            return {"stream": self.stream, "total_events": int(info.get("length", 0)),
                    "entries_added": int(info.get("entries-added", 0) or 0), "lag": None, "pending": None,
                    "groups": [], "lag_unknown": f"no consumer group reads stream {self.stream}"}
        last, first = _id(info.get("last-generated-id")), _id(info.get("recorded-first-entry-id"))
        length = int(info.get("length", 0))
        trimmed_total = 0
        for g in info["groups"]:
            name, delivered = _s(g.get("name")), _id(g.get("last-delivered-id"))
            lag, trimmed, source = self._lag(name, g.get("lag"), delivered, last, first, length)
            if source == "xrange (inexact)":
                exact = False
            pending = int(g.get("pel-count", 0))
            consumers = [{"name": _s(_get(c, "name")), "pending": int(_get(c, "pel-count", 0))}
                         for c in g.get("consumers") or []]
            groups.append({"name": name, "lag": int(lag), "lag_source": source, "pending": pending,
                           "trimmed_unread": trimmed, "consumers": consumers})
            lag_total += int(lag)
            pending_total += pending
            trimmed_total += trimmed
        return {
            "stream": self.stream,
            "total_events": length,  # XLEN: capped by the producer's MAXLEN ~
            "entries_added": int(info.get("entries-added", 0) or 0),
            "lag": lag_total,
            "pending": pending_total,
            # Events the producer's MAXLEN ~ trimmed before a group read them: lost to that group, never
            # to be drained (since the group's creation; a run reads its own as the change).
            "lost_unread": trimmed_total,
            "lag_exact": exact,
            "groups": groups,
        }

    def _lag(self, group: str, redis_lag, delivered: tuple, last: tuple, first: tuple,
             length: int) -> tuple[int, int, str]:
        """(entries still to deliver to `group`, entries trimmed before it read them, how counted).

        Redis 7's lag is entries added − entries the group read: entries the producer's MAXLEN ~ trimmed
        before the group read them stay in it for good (a group that read everything still shows them).
        The part still in the stream is known exactly when the group has everything (0) or its next
        entry was trimmed (the whole stream); in between, the trimmed count last known holds (entries
        after the group's position are trimmed only once it is behind the stream's start again)."""
        if redis_lag is None:
            count, ok = self._count_after(f"{delivered[0]}-{delivered[1]}")
            return count, 0, "xrange" if ok else "xrange (inexact)"
        redis_lag = int(redis_lag)
        if delivered >= last:
            present = 0
        elif delivered < first:
            present = length
        elif group in self._trimmed:
            present = max(redis_lag - self._trimmed[group], 0)
        else:  # first look, mid-stream: count once to learn what the counter holds beside the unread
            present, ok = self._count_after(f"{delivered[0]}-{delivered[1]}")
            if not ok:
                return redis_lag, 0, "redis"
        trimmed = max(redis_lag - present, 0)
        base = self._trimmed_before.setdefault(group, trimmed)
        said, now = self._said_trimmed.get(group, (base, 0.0)), time.monotonic()
        if trimmed > said[0] and now - said[1] >= 30:  # once, then at most every 30 s while it grows
            log.warning("redis_bus: stream %s: %d events trimmed before group %s read them, since sampling began "
                        "(the producer's XADD MAXLEN ~: edx-event-bus-redis' EVENT_BUS_REDIS_STREAM_MAX_LEN): "
                        "lost to the pipeline, counted as lost_unread, not as lag", self.stream, trimmed - base, group)
            self._said_trimmed[group] = (trimmed, now)
        self._trimmed[group] = trimmed
        return present, trimmed, "redis"

    def backlog(self, sample: dict) -> int | None:
        """lag + pending; None when the lag is unknown (`lag_unknown` says why)."""
        if sample["lag"] is None:
            return None
        return sample["lag"] + sample["pending"]

    def close(self) -> None:
        self.client.close()


def _url(options) -> str:
    return options.event_bus_redis_url or redis_util.default_url()


def _stream(options) -> str:
    return options.event_bus_stream or event_bus_topic(options)


def check_reachable(options) -> None:
    check_redis(NAME, _url(options))


class RedisBusSender(RedisSender):
    takes_tracking_log = True  # XADD's fields hold the event as the bus carries it


def sender(environment, options) -> RedisSender:
    stream, maxlen = _stream(options), options.redis_stream_maxlen
    head = ("XADD", stream, *(("MAXLEN", "~", maxlen) if maxlen else ()), "*")

    def command(event: dict | wire.TrackingLog) -> tuple[tuple, int]:
        fields = wire.redis_bus_fields(event)
        return (*head, *(x for kv in fields.items() for x in kv)), len(fields["event_data"])

    return RedisBusSender(environment, NAME, command, url=_url(options))


def sampler(options) -> Sampler:
    return Sampler(_url(options), _stream(options), options.redis_bus_count_limit)


def entry(opts: dict) -> str:
    return where(opts.get("event_bus_redis_url"))
