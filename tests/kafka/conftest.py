"""Fixtures for the Kafka suite: topics on the session's Tansu, a running stream processor."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid

import pytest

from tests.helpers import REPO, wait_for


@pytest.fixture
def topics(kafka):
    """A fresh (input, output) topic pair, 4 partitions each."""
    from confluent_kafka.admin import AdminClient, NewTopic

    base = f"t{uuid.uuid4().hex[:8]}"
    names = (f"{base}-in", f"{base}-out")
    admin = AdminClient({"bootstrap.servers": kafka.url})
    for future in admin.create_topics([NewTopic(n, 4) for n in names]).values():
        future.result(30)
    return names


def producer(kafka):
    from confluent_kafka import Producer

    return Producer({"bootstrap.servers": kafka.url, "linger.ms": 0})


def produce_output(kafka, topic: str, events: list[dict]) -> None:
    """Write messages as a stream processor would (JSON with timestamp_start)."""
    p = producer(kafka)
    for e in events:
        p.produce(topic, json.dumps(e).encode())
    p.flush(30)


def latency_cli(kafka, *args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "monitors.kafka_latency", "--brokers", kafka.url,
                           "--session-timeout-ms", "6000", *args],
                          cwd=REPO, capture_output=True, text=True, timeout=timeout)


@pytest.fixture
def processor(kafka, topics):
    """The reference stream processor between the pair of topics; yields a function to start it."""
    procs = []

    def start(*extra: str) -> subprocess.Popen:
        proc = subprocess.Popen([sys.executable, "-m", "targets.streams.processor", "--brokers", kafka.url,
                                 "--input-topic", topics[0], "--output-topic", topics[1],
                                 "--group", f"proc-{topics[0]}", "--session-timeout-ms", "6000", *extra],
                                cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                env={**os.environ, "PYTHONUNBUFFERED": "1"})
        procs.append(proc)
        # Ready once a probe message makes it through (the group join takes a few seconds on Tansu).
        from confluent_kafka import Consumer

        c = Consumer({"bootstrap.servers": kafka.url, "group.id": f"probe-{uuid.uuid4().hex[:6]}",
                      "auto.offset.reset": "earliest"})
        c.subscribe([topics[1]])
        p = producer(kafka)
        p.produce(topics[0], json.dumps({"probe": True}).encode())
        p.flush(10)

        def probe_out() -> bool:
            msg = c.poll(0.5)
            return msg is not None and not msg.error()

        wait_for(probe_out, timeout=60, what="the processor to forward a probe")
        c.close()
        return proc

    yield start
    for proc in procs:
        proc.terminate()
        proc.wait(timeout=30)
