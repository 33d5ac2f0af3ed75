"""Pipelined sends (backends.base.RedisSender): many events per write on one connection, each timed to
its own reply. Every event arrives exactly once, in the order the process made them, and every send
is counted as succeeded or failed, also when the server closes the connection in the middle of a
batch. Each test has a Redis of its own (the session's is not disturbed). kafka_bus, whose
deliveries are reported in batches: each event once in the topic and once in the statistics.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import threading
import time

import pytest

from stack import Stack
from targets.pipeline.decode import tracking_event
from tests.helpers import REPO, start_locust, wait_for
from tests.pipeline.conftest import LOCUSTFILE

STREAM = "pipelined-analytics"
_OPEN = re.compile(r"open model: planned ([\d,]+), started ([\d,]+), dropped ([\d,]+)")


@pytest.fixture
def own_redis(tmp_path):
    s = Stack(tmp_path / "stack", free_ports=True)
    yield s.start("redis")["redis"].url
    s.stop()


def start_run(url: str, tmp_path, events: int, rate: int) -> subprocess.Popen:
    args = ["-f", LOCUSTFILE, "--headless", "-u", "20", "-r", "20", "--pipeline-backend", "redis_bus",
           "--event-bus-redis-url", url, "--event-bus-stream", STREAM, "--redis-stream-maxlen", "0",
           "--num-events", str(events), "--events-per-second", str(rate), "--event-mix", "realistic",
           "--no-e2e", "--no-monitor", "--no-sar", "--only-summary", "-t", "120s",
           "--json-file", str(tmp_path / "stats")]
    return start_locust(args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def finish(proc: subprocess.Popen, tmp_path) -> tuple[dict, dict]:
    """The open model's figures and the EVENT requests' {requests, failures} of a finished run."""
    err = proc.communicate(timeout=180)[1]
    assert "Traceback" not in err, err[-3000:]
    m = _OPEN.search(err)
    assert m, err[-3000:]
    planned, started, dropped = (int(g.replace(",", "")) for g in m.groups())
    rows = [r for r in json.loads((tmp_path / "stats.json").read_text()) if r["method"] == "EVENT"]
    return ({"planned": planned, "started": started, "dropped": dropped},
            {"requests": sum(r["num_requests"] for r in rows), "failures": sum(r["num_failures"] for r in rows)})


def stored(url: str) -> list[tuple[str, str]]:
    """(CloudEvent id, event time) of every entry in the stream, in stream order."""
    import redis

    client = redis.Redis.from_url(url)
    try:
        return [(f[b"id"].decode(), tracking_event(f[b"event_data"])["timestamp"])
                for _i, f in client.xrange(STREAM)]
    finally:
        client.close()


def assert_once_in_order(entries: list[tuple[str, str]]) -> None:
    ids = [i for i, _t in entries]
    assert len(set(ids)) == len(ids), "an event was stored twice"
    times = [t for _i, t in entries]
    # One process makes its events with increasing times (openedx_erb.events.Clock), in plan order.
    assert times == sorted(times), "events were stored out of the order they were made"


def test_pipelined_sends_store_each_event_once_in_plan_order(own_redis, tmp_path):
    proc = start_run(own_redis, tmp_path, 3000, 1500)  # 1,500/s: several events per write
    om, events = finish(proc, tmp_path)
    entries = stored(own_redis)
    assert om["planned"] == 3000 and om["started"] + om["dropped"] == 3000
    assert events == {"requests": om["started"], "failures": 0}
    assert len(entries) == om["started"]
    assert_once_in_order(entries)


def test_a_connection_closed_mid_batch_fails_its_unanswered_events_and_loses_none(own_redis, tmp_path):
    import redis

    proc = start_run(own_redis, tmp_path, 12_000, 3000)
    client = redis.Redis.from_url(own_redis)
    kills: list[int] = []

    def kill_connections() -> None:
        # Redis closes the generator's connection while writes and replies are in flight; it keeps
        # what it stored, so every stored entry can be matched to a counted send.
        for step in range(1, 6):
            wait_for(lambda s=step: client.xlen(STREAM) > 1500 * s, timeout=60, what="events in the stream")
            kills.append(client.client_kill_filter(_type="normal", skipme=True))

    killer = threading.Thread(target=kill_connections)
    killer.start()
    try:
        om, events = finish(proc, tmp_path)
    finally:
        killer.join(timeout=90)
    entries = stored(own_redis)
    client.close()
    assert len(kills) == 5 and all(kills), kills
    assert events["requests"] == om["started"]  # every event taken was counted once, as sent or failed
    assert events["failures"] > 0  # the cut-off replies failed their events
    ok = events["requests"] - events["failures"]
    # An event whose reply was lost may be stored though failed (Redis had it): never the reverse.
    assert ok <= len(entries) <= events["requests"]
    assert len(entries) > 1500 * 5  # it reconnected after each cut and went on
    assert_once_in_order(entries)


def test_kafka_bus_events_are_each_delivered_and_counted_once_in_plan_order(kafka, tmp_path):
    # kafka_bus reports its deliveries in batches (one flush per turn of its delivery pump): each event
    # is a request once, timed from its send and from its planned instant, and in the topic once.
    from confluent_kafka import OFFSET_BEGINNING, Consumer, TopicPartition

    from monitors.kafka_latency import consumer_config

    topic = f"pipelined{threading.get_ident() % 100_000}-{tmp_path.name[-6:]}-analytics"
    subprocess.run([sys.executable, "-m", "targets.streams.topics", "--brokers", kafka.url, topic], cwd=REPO,
                   check=True, capture_output=True)
    args = ["-f", LOCUSTFILE, "--headless", "-u", "20", "-r", "20", "--pipeline-backend", "kafka_bus",
           "--kafka-bus-brokers", kafka.url, "--kafka-bus-topic", topic, "--num-events", "3000",
           "--events-per-second", "1500", "--event-mix", "realistic", "--no-e2e", "--no-monitor", "--no-sar",
           "--only-summary", "-t", "120s", "--json-file", str(tmp_path / "stats")]
    (tmp_path / "results").mkdir()
    proc = start_locust(args, env={"LOCUST_RESULTS_DIR": str(tmp_path / "results")}, stdout=subprocess.DEVNULL,
                        stderr=subprocess.PIPE)
    om, events = finish(proc, tmp_path)
    assert om["planned"] == 3000 and om["started"] + om["dropped"] == 3000
    assert events == {"requests": om["started"], "failures": 0}
    final = json.loads((tmp_path / "results" / "stats.json").read_text())
    planned = [r for r in final["from_planned_start"] if r["type"] == "EVENT"]
    assert sum(r["requests"] for r in planned) == om["started"]  # each timed from its planned instant once

    c = Consumer(consumer_config({"bootstrap.servers": kafka.url}, f"t-{tmp_path.name[-8:]}"))
    parts = sorted(c.list_topics(topic, timeout=10).topics[topic].partitions)
    c.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in parts])
    by_partition: dict[int, list[tuple[str, str]]] = {}
    n = 0
    deadline = time.monotonic() + 60
    while n < om["started"] and time.monotonic() < deadline:
        for msg in c.consume(num_messages=1000, timeout=0.5):
            if msg.error():
                continue
            by_partition.setdefault(msg.partition(), []).append(
                (dict(msg.headers())["ce_id"].decode(), tracking_event(msg.value()[5:])["timestamp"]))
            n += 1
    c.close()
    assert n == om["started"]
    for entries in by_partition.values():  # one process's events: in the order it made them, per partition
        assert_once_in_order(entries)
    assert len({i for entries in by_partition.values() for i, _t in entries}) == n
