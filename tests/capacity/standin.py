"""A pipeline stand-in whose capacity is exactly known: a consumer group member that moves tracking
events from the event bus (--bus redis_bus: openedx-event-bus-redis's stream; kafka_bus:
openedx-event-bus-kafka's topic, 4 partitions) through ERB into the xAPI table at most --rate
events/s, limited at one stage:

- ``--limit consumer``: reading the bus is paced (the bus lag grows above the rate; what is read
  is stored at once), as a consumer too slow for its stream;
- ``--limit insert``: the bus is read and acknowledged at once, and the ClickHouse inserts are
  paced (events leave the bus and wait before the xAPI table), as a slow insert path.

With ``--no-group`` it reads the stream with plain XREAD (no consumer group: the stream records no
reader, so its lag cannot be measured).

    python -m tests.capacity.standin --limit consumer --rate 40 --redis-url … --stream t1-analytics \
        --clickhouse-url … --xapi-database xapi_t1 --ready-file …
    python -m tests.capacity.standin --bus kafka_bus --kafka-brokers … --stream t1-analytics …

Ready once reading: for kafka_bus, once the group has given it the partitions.
"""

from __future__ import annotations

import argparse
import queue
import signal
import threading
import time
from pathlib import Path

import openedx_erb
from targets.pipeline import decode
from targets.pipeline.router import Store

TICK = 0.1  # s: the pace's granularity (events move in slices of rate × TICK)


class Pace:
    """At most `rate` events/s on average, in slices: the caller waits until its slice is due. The
    schedule is fixed (a slow slice, e.g. a slow insert, is caught up) with at most CATCH_UP s of
    credit, so the stage moves `rate` events/s whenever it has them, however slow this machine is."""

    CATCH_UP = 2 * TICK

    def __init__(self, rate: float) -> None:
        self.rate, self.due = rate, time.monotonic()

    def take(self, n: int) -> None:
        now = time.monotonic()
        if self.due > now:
            time.sleep(self.due - now)
        self.due = max(self.due, now - self.CATCH_UP) + n / self.rate


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m tests.capacity.standin", description=__doc__)
    p.add_argument("--limit", choices=("consumer", "insert"), required=True)
    p.add_argument("--rate", type=float, required=True)
    p.add_argument("--bus", choices=("redis_bus", "kafka_bus"), default="redis_bus")
    p.add_argument("--redis-url", default="")
    p.add_argument("--kafka-brokers", default="")
    p.add_argument("--stream", required=True, help="the stream (redis_bus) or topic (kafka_bus)")
    p.add_argument("--group", default="event_routing_backends")
    p.add_argument("--no-group", action="store_true", help="read with XREAD, no consumer group")
    p.add_argument("--clickhouse-url", required=True)
    p.add_argument("--xapi-database", required=True)
    p.add_argument("--ready-file", type=Path, required=True)
    a = p.parse_args(argv)
    openedx_erb.setup()
    store = Store(a.clickhouse_url, a.xapi_database)
    store.ensure_table()
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    read: queue.Queue = queue.Queue()
    slice_n = max(1, round(a.rate * TICK))

    pace = Pace(a.rate) if a.limit == "consumer" else None
    count = slice_n if pace else 1000
    if a.bus == "redis_bus":
        consume = redis_reader(a, stop, read, pace, count)
    else:
        consume = kafka_reader(a, stop, read, pace, count)

    def insert() -> None:
        pace = Pace(a.rate) if a.limit == "insert" else None
        waiting: list[dict] = []
        while not stop.is_set():
            try:
                while True:
                    waiting += read.get(timeout=TICK) if not waiting else read.get_nowait()
            except queue.Empty:
                pass
            if not waiting:
                continue
            batch, waiting = (waiting[:slice_n], waiting[slice_n:]) if pace else (waiting, [])
            if pace:
                pace.take(len(batch))
            statements = [s for e in batch for s in openedx_erb.statements(e)]
            if statements:
                store.insert(statements)

    threads = [threading.Thread(target=f, daemon=True) for f in (consume, insert)]
    for t in threads:
        t.start()
    a.ready_file.touch()
    stop.wait()
    return 0


def redis_reader(a, stop: threading.Event, read: queue.Queue, pace: Pace | None, count: int):
    import redis

    r = redis.Redis.from_url(a.redis_url)
    try:
        if not a.no_group:
            r.xgroup_create(a.stream, a.group, id="0", mkstream=True)
    except redis.ResponseError as exc:
        if "BUSYGROUP" not in str(exc):
            raise

    def consume() -> None:
        last = "0"
        while not stop.is_set():
            resp = (r.xread({a.stream: last}, count=count, block=200) if a.no_group
                    else r.xreadgroup(a.group, "standin", {a.stream: ">"}, count=count, block=200))
            entries = resp[0][1] if resp else []
            if not entries:
                continue
            if pace:
                pace.take(len(entries))
            read.put([decode.tracking_event(fields[b"event_data"]) for _id, fields in entries])
            if a.no_group:
                last = entries[-1][0]
            else:
                r.xack(a.stream, a.group, *[i for i, _f in entries])

    return consume


def kafka_reader(a, stop: threading.Event, read: queue.Queue, pace: Pace | None, count: int):
    """A group member reading the topic (created with 4 partitions, as a broker's auto-creation here
    does), committing after each read, as targets.pipeline does; returns once it has its partitions."""
    from confluent_kafka import Consumer
    from confluent_kafka.admin import AdminClient, NewTopic

    from plumbing import kafka_conf

    admin = AdminClient({"bootstrap.servers": a.kafka_brokers})
    if a.stream not in admin.list_topics(timeout=10).topics:
        admin.create_topics([NewTopic(a.stream, 4)])[a.stream].result(timeout=10)
    # session.timeout.ms 6000: Tansu holds a group's join for half of it (45 s by default).
    c = Consumer({**kafka_conf.READER_DEFAULTS, "bootstrap.servers": a.kafka_brokers, "group.id": a.group,
                  "enable.auto.commit": False, "auto.offset.reset": "earliest", "session.timeout.ms": 6000})
    joined = threading.Event()
    c.subscribe([a.stream], on_assign=lambda _c, _p: joined.set())
    held: list = []
    while not joined.is_set():  # the join completes within a poll
        held += c.consume(num_messages=count, timeout=0.2)

    def consume() -> None:
        nonlocal held
        while not stop.is_set():
            msgs, held = held or c.consume(num_messages=count, timeout=0.2), []
            msgs = [m for m in msgs if not m.error()]
            if not msgs:
                continue
            if pace:
                pace.take(len(msgs))
            read.put([decode.tracking_event(decode.confluent_payload(m.value())) for m in msgs])
            c.commit(asynchronous=False)
        c.close()

    return consume


if __name__ == "__main__":
    raise SystemExit(main())
