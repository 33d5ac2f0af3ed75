"""A broker restarted mid-run: the tracking senders reconnect, no send goes uncounted, the monitor
keeps sampling. Each test has a broker of its own (the session's servers are not disturbed).

Redis answers each send, so the sends of the gap fail. Kafka's producer keeps the sends of the gap
queued and delivers them once the broker is back; what is still undelivered at the end is failed.
"""

from __future__ import annotations

import json
import subprocess
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from plumbing import chclient
from plumbing.locust_csv import read_locust_stats
from stack import Stack
from tests.helpers import start_locust, wait_for
from tests.pipeline.conftest import LOCUSTFILE

EVENTS = 3000
STREAM = "restart-analytics"


@pytest.fixture
def own_stack(tmp_path):
    s = Stack(tmp_path / "stack", free_ports=True)
    yield s
    s.stop()


def start_tracking(clickhouse, tmp_path: Path, run_id: str, *args: str) -> subprocess.Popen:
    """EVENTS tracking events at 200/s with the monitor on; output in tmp_path/locust.log."""
    cmd = ["-f", LOCUSTFILE, "--headless", "-u", "10", "-r", "10", "--run-id", run_id,
           "--num-events", str(EVENTS), "--events-per-second", "200", "--no-e2e", "--event-bus-prefix", "restart",
           "--clickhouse-url", clickhouse.url, "--monitor-interval", "0.5", "--drain-timeout", "3",
           "--spill-dir", str(tmp_path / "spill"), "--csv", str(tmp_path / "run"), *args]
    with open(tmp_path / "locust.log", "w") as out:
        return start_locust(cmd, env={"LOCUST_RESULTS_DIR": str(tmp_path)}, stdout=out, start_new_session=False)


def finish_beside(proc: subprocess.Popen, tmp_path: Path, action: Callable[[], None]) -> tuple[int, str, dict]:
    """Runs `action` (the broker's restart or stop) in a thread while the run goes on, then waits for
    both: exit code, output and the EVENT counts of stats.json ({requests, failures})."""
    thread = threading.Thread(target=action)
    thread.start()
    try:
        code = proc.wait(timeout=240)
    finally:
        if proc.poll() is None:
            proc.kill()
        thread.join(timeout=60)
    output = (tmp_path / "locust.log").read_text()
    rows = json.loads((tmp_path / "stats.json").read_text())["requests"]
    events = [r for r in rows if r["type"] == "EVENT"]
    return code, output, {k: sum(r[k] for r in events) for k in ("requests", "failures")}


def assert_every_send_counted(output: str, events: dict) -> None:
    """The run did not crash and counted each of its EVENTS sends, as succeeded or failed."""
    assert "Traceback" not in output, output[-3000:]
    assert events["requests"] == EVENTS


def samples_after(clickhouse, run_id: str, source: str, after: float) -> int:
    client = chclient.connect(clickhouse.url)
    try:
        return client.execute("SELECT count() FROM event_sink.load_test_samples WHERE run_id = %(r)s "
                              "AND source = %(s)s AND time_ms > %(t)s", {"r": run_id, "s": source,
                                                                         "t": int(after * 1000)})[0][0]
    finally:
        client.disconnect()


def test_redis_bus_restart_counts_the_gap_as_failures_and_loses_nothing(own_stack, clickhouse, tmp_path):
    import redis

    url = own_stack.start("redis")["redis"].url
    proc = start_tracking(clickhouse, tmp_path, "t-restart-redis", "--pipeline-backend", "redis_bus",
                          "--event-bus-redis-url", url, "--event-bus-stream", STREAM, "--redis-stream-maxlen", "0",
                          "--monitor-backend", "redis_bus")
    marks: dict[str, float] = {}

    def restart() -> None:
        client = redis.Redis.from_url(url)
        wait_for(lambda: client.xlen(STREAM) > 300, timeout=60, what="events in the stream")
        marks["down"] = time.time()
        try:  # a restart that keeps the data (as a persistent Redis would), so every entry can be counted
            client.shutdown(save=True)
        except redis.ConnectionError:
            pass
        own_stack.stop("redis")
        wait_for(lambda: int(read_locust_stats(tmp_path / "run")["Aggregated"]["Failure Count"]),
                 timeout=30, what="sends failing while Redis is down")
        own_stack.start("redis")
        marks["up"] = time.time()

    code, output, events = finish_beside(proc, tmp_path, restart)

    assert "up" in marks, output[-3000:]
    assert_every_send_counted(output, events)
    assert events["failures"] > 0 and code == 1  # the sends of the gap failed, so the run says so
    client = redis.Redis.from_url(url)
    ok, stored = events["requests"] - events["failures"], client.xlen(STREAM)
    # A send whose reply was cut off by the shutdown is failed though Redis kept it: never the reverse.
    assert ok <= stored <= ok + events["failures"]
    after = [i for i, _ in client.xrange(STREAM) if int(i.split(b"-")[0]) >= marks["up"] * 1000]
    assert after, "nothing reached the restarted Redis"
    assert samples_after(clickhouse, "t-restart-redis", "redis_bus", marks["up"]) > 0


def kafka_messages(brokers: str, topic: str) -> int:
    from confluent_kafka import Consumer, TopicPartition

    consumer = Consumer({"bootstrap.servers": brokers, "group.id": "restart-test"})
    try:
        meta = consumer.list_topics(topic, timeout=10).topics.get(topic)
        parts = sorted(meta.partitions) if meta is not None and meta.error is None else []
        return sum(consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1] for p in parts)
    finally:
        consumer.close()


def create_topic(brokers: str, topic: str) -> None:
    from confluent_kafka.admin import AdminClient, NewTopic

    admin = AdminClient({"bootstrap.servers": brokers})
    admin.create_topics([NewTopic(topic, num_partitions=2, replication_factor=1)])[topic].result(30)


def kafka_run(own_stack, clickhouse, tmp_path, run_id: str, *extra: str) -> tuple[subprocess.Popen, str]:
    brokers = own_stack.start("kafka")["kafka"].url
    create_topic(brokers, STREAM)
    proc = start_tracking(clickhouse, tmp_path, run_id, "--pipeline-backend", "kafka_bus",
                          "--kafka-bus-brokers", brokers, "--kafka-bus-topic", STREAM,
                          "--monitor-backend", "kafka_bus", "--kafka-bus-group", "restart-test", *extra)
    return proc, brokers


def test_kafka_bus_restart_reconnects_and_counts_every_send(own_stack, clickhouse, tmp_path):
    proc, brokers = kafka_run(own_stack, clickhouse, tmp_path, "t-restart-kafka")
    marks: dict[str, float] = {}

    def restart() -> None:
        wait_for(lambda: kafka_messages(brokers, STREAM) > 300, timeout=60, what="events in the topic")
        own_stack.stop("kafka")  # Tansu keeps topics in memory: the restarted broker starts empty
        own_stack.start("kafka")
        marks["up"] = time.time()

    _code, output, events = finish_beside(proc, tmp_path, restart)

    assert "up" in marks, output[-3000:]
    assert_every_send_counted(output, events)  # the sends of the gap delivered or failed
    after = kafka_messages(brokers, STREAM)
    assert 0 < after <= events["requests"] - events["failures"]
    assert samples_after(clickhouse, "t-restart-kafka", "kafka_bus", marks["up"]) > 0


def test_kafka_bus_events_undeliverable_at_the_end_are_failures(own_stack, clickhouse, tmp_path):
    proc, brokers = kafka_run(own_stack, clickhouse, tmp_path, "t-restart-kafka-gone", "--delivery-timeout", "5")

    def stop() -> None:
        wait_for(lambda: kafka_messages(brokers, STREAM) > 300, timeout=60, what="events in the topic")
        own_stack.stop("kafka")  # and it stays down

    code, output, events = finish_beside(proc, tmp_path, stop)

    assert_every_send_counted(output, events)
    assert events["failures"] > 0 and code == 1
    assert "events undelivered 5 s after the end; counted as failed" in output
