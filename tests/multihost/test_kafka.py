"""Kafka producers on two worker hosts, Tansu on the system's host: the topic holds exactly the messages
Locust counted as delivered, and the monitor's interval rows in ClickHouse (another host) agree."""

from __future__ import annotations

import uuid

from tests.helpers import wait_for
from tests.multihost import distributed

MESSAGES = 2000


def topic_count(brokers: str, topic: str, expected: int) -> int:
    """Messages in `topic`, read from the beginning by a consumer of the test's own group."""
    from confluent_kafka import Consumer

    c = Consumer({"bootstrap.servers": brokers, "group.id": f"count-{uuid.uuid4().hex[:6]}",
                  "auto.offset.reset": "earliest", "enable.auto.commit": False})
    c.subscribe([topic])
    seen = [0]

    def read() -> bool:
        for msg in c.consume(num_messages=1000, timeout=0.5):
            if not msg.error():
                seen[0] += 1
        return seen[0] >= expected

    try:
        wait_for(read, timeout=60, interval=0, what=f"{expected} messages in {topic}")
        for _ in range(3):  # nothing more behind them
            read()
    finally:
        c.close()
    return seen[0]


def test_distributed_kafka_producers_across_hosts_deliver_exactly_what_they_count(topology, ch, sut_kafka, tmp_path):
    topic = f"t{uuid.uuid4().hex[:8]}-in"
    run = distributed.run(topology, "kafka", [
        "--kafka-brokers", sut_kafka.url, "--kafka-topic", topic, "--kafka-messages", str(MESSAGES),
        "--users", "4", "--spawn-rate", "4", "--clickhouse-url", ch.url, "--monitor-interval", "1", "--no-sar"],
        tmp_path)
    run.assert_ok()
    final = run.stats()
    delivered = sum(r["requests"] - r["failures"] for name, r in final.items() if name != "Aggregated")
    assert delivered == MESSAGES
    assert topic_count(sut_kafka.url, topic, MESSAGES) == MESSAGES
    assert distributed.interval_requests(ch.url, run.run_id) == {name: r["requests"] for name, r in final.items()}
    assert distributed.run_rows(ch.url, run.run_id) == ["end", "start"]
    print(f"ground truth kafka: topic {MESSAGES} messages = delivered {delivered} = interval rows")
