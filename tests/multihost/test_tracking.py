"""Tracking events in the open model from two worker hosts, through the reference pipeline on the system's
host (Redis bus → event-routing-backends → ClickHouse on a host of its own): the planned rate is split
exactly between the workers, every event sent is stored, and the counts agree everywhere."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import uuid

import pytest

from tests.helpers import wait_for
from tests.multihost import distributed

EVENTS, RATE = 600, 100


@pytest.fixture
def pipeline(topology, ch, sut_redis, tmp_path):
    """The reference redis_bus pipeline on host `sut`, on its own database and stream."""
    tag = uuid.uuid4().hex[:8]
    db, prefix, ready = f"xapi_{tag}", f"t{tag}", tmp_path / "pipeline-ready"
    proc = topology["sut"].popen(
        [sys.executable, "-m", "targets.pipeline", "redis_bus", "--clickhouse-url", ch.url, "--xapi-database", db,
         "--redis-url", sut_redis.url, "--topic-prefix", prefix, "--backend-name", prefix,
         "--ready-file", str(ready)], env=distributed.clean_env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_for(ready.exists, timeout=60, what="the reference pipeline on host sut to consume")
    yield db, prefix
    proc.send_signal(signal.SIGTERM)
    proc.wait(timeout=60)


def test_distributed_open_model_tracking_across_hosts_is_complete(topology, ch, sut_redis, pipeline, tmp_path):
    db, prefix = pipeline
    run = distributed.run(topology, "tracking", [
        "--users", "40", "--spawn-rate", "40", "--pipeline-backend", "redis_bus", "--xapi-database", db,
        "--clickhouse-url", ch.url, "--event-bus-prefix", prefix, "--event-bus-redis-url", sut_redis.url,
        "--monitor-backend", "redis_bus", "--num-events", str(EVENTS), "--events-per-second", str(RATE),
        "--monitor-interval", "1", "--drain-timeout", "60", "--no-sar", "--only-summary"], tmp_path)
    run.assert_ok()
    end = json.loads(distributed.query(ch.url, "SELECT extra FROM event_sink.load_test_runs WHERE run_id = %(r)s "
                                               "AND event_type = 'end'", {"r": run.run_id})[0][0])
    # The plan of 600 events at 100/s, split exactly: each worker host planned half. An iteration that
    # found no free user (a loaded machine) is dropped and counted, never sent late.
    om = end["open_model"]
    assert om["planned_per_process"] == [EVENTS // 2, EVENTS // 2]
    assert om["started"] + om["dropped"] == EVENTS
    # Every event sent is stored once; sent = Locust's requests = ClickHouse's interval rows = xAPI rows.
    e2e = end["e2e"]
    assert (e2e["sent"], e2e["stored"], e2e["missing"], e2e["duplicates"]) == (om["started"], om["started"], 0, 0), e2e
    final = {name: r["requests"] for name, r in run.stats().items()}
    sent = sum(r["requests"] for name, r in run.stats().items() if name != "Aggregated" and r["type"] not in ("E2E", "DROPPED"))
    assert sent == om["started"], final
    assert distributed.interval_requests(ch.url, run.run_id) == final
    assert distributed.query(ch.url, f"SELECT count() FROM {db}.xapi_events_all")[0][0] == om["started"]
    assert distributed.run_rows(ch.url, run.run_id) == ["end", "start"]
