"""The kafka_bus reference pipeline as a deployment runs it: its topic exists before its consumers
subscribe, and it says ready only once every worker has its partitions from the group's join
(a join takes seconds on any broker; events sent before it waited there as if the pipeline were slow)."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import uuid

from confluent_kafka.admin import AdminClient

from tests.helpers import REPO, wait_for


def test_ready_once_each_worker_has_its_partitions_of_the_topic_it_created(clickhouse, redis_server, kafka, tmp_path):
    prefix = f"g{uuid.uuid4().hex[:8]}"
    ready, log = tmp_path / "ready", tmp_path / "pipeline.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "targets.pipeline", "kafka_bus", "--workers", "2", "--clickhouse-url", clickhouse.url,
             "--xapi-database", f"xapi_{prefix}", "--redis-url", redis_server.url, "--topic-prefix", prefix,
             "--backend-name", prefix, "--kafka-brokers", kafka.url, "--session-timeout-ms", "6000",
             "--group", f"{prefix}-group",  # its own: Tansu may not complete a rejoin of a stopped 2-member group
             "--ready-file", str(ready)],
            cwd=REPO, stdout=subprocess.DEVNULL, stderr=out, start_new_session=True)
    try:
        wait_for(lambda: ready.exists() or proc.poll() is not None, timeout=90, what="pipeline ready")
        assert ready.exists(), log.read_text()[-2000:]
        text = log.read_text()
        # Both workers were in the group when it said ready, between them on all four partitions.
        assigned = re.findall(r"pipeline\[kafka_bus#(\d)\] assigned ([\d,]+|no partition)", text)
        assert {w for w, _ in assigned} == {"0", "1"}, text[-2000:]
        last = {w: parts for w, parts in assigned}
        assert sorted(p for parts in last.values() for p in parts.split(",")) == ["0", "1", "2", "3"], text[-2000:]
        topic = AdminClient({"bootstrap.servers": kafka.url}).list_topics(timeout=10).topics[f"{prefix}-analytics"]
        assert len(topic.partitions) == 4
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=60)
