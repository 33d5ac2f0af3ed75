"""The tracking rate capacity search from a Locust master with two workers on other hosts: the master
splits each step's rate between the workers, judges, and writes the one capacity.json; a worker that
cannot offer its share (drops, seen only in its reports) stops the search as the generator's limit."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import uuid

import pytest

from tests.helpers import wait_for
from tests.multihost import distributed

FAST = ["--capacity-step-time", "8", "--capacity-settle-time", "3", "--capacity-ramp-time", "0",
        "--capacity-sample-interval", "0.5", "--e2e-poll-interval", "0.5", "--monitor-interval", "1",
        "--drain-timeout", "30", "--capacity-time-limit", "60", "--no-sar"]


@pytest.fixture
def standin(topology, ch, sut_redis, tmp_path):
    """The stand-in pipeline of tests/capacity (a redis_bus consumer into ClickHouse, far faster than the
    rates tried here: no batch timer's sawtooth) on host sut; (database, prefix)."""
    tag = uuid.uuid4().hex[:8]
    db, prefix, ready = f"xapi_c{tag}", f"c{tag}", tmp_path / "standin-ready"
    proc = topology["sut"].popen(
        [sys.executable, "-m", "tests.capacity.standin", "--limit", "consumer", "--rate", "1000",
         "--redis-url", sut_redis.url, "--stream", f"{prefix}-analytics", "--clickhouse-url", ch.url,
         "--xapi-database", db, "--ready-file", str(ready)],
        env=distributed.clean_env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_for(lambda: ready.exists() or proc.poll() is not None, timeout=60, what="the stand-in on host sut")
    assert ready.exists(), f"the stand-in exited with {proc.poll()}"
    yield db, prefix
    proc.send_signal(signal.SIGTERM)
    proc.wait(timeout=60)


def test_a_search_across_hosts_splits_the_rate_and_the_master_writes_one_result(topology, ch, sut_redis, standin,
                                                                                  tmp_path):
    db, prefix = standin
    rate = 40  # one step, well within the reference pipeline: it passes
    run = distributed.run(topology, "tracking", [
        "--users", "20", "--spawn-rate", "20", "--pipeline-backend", "redis_bus", "--xapi-database", db,
        "--clickhouse-url", ch.url, "--event-bus-prefix", prefix, "--event-bus-redis-url", sut_redis.url,
        "--monitor-backend", "redis_bus", "--capacity-search", "--capacity-start-rate", str(rate),
        "--capacity-max-rate", str(rate), *FAST], tmp_path)
    run.assert_ok()
    cap = json.loads((run.out / "capacity.json").read_text())
    [step] = cap["steps"]
    assert step["verdict"] == "pass" and cap["sustained_events_per_second"] == rate, step
    # Split, not copied: what both workers sent together, stored in ClickHouse, is the step's rate.
    assert abs(step["stored_per_s"] - rate) <= 0.15 * rate and step["sent_per_s_reported"] < 1.5 * rate, step
    assert step["backlog"]["bus"]["samples"] >= 4  # the bus on host sut sampled from the master's host
    assert sorted(p.name for p in tmp_path.rglob("capacity.json")) == ["capacity.json"]  # the master's only
    end = json.loads(distributed.query(ch.url, "SELECT extra FROM event_sink.load_test_runs WHERE run_id = %(r)s "
                                               "AND event_type = 'end'", {"r": run.run_id})[0][0])
    shares = end["open_model"]["planned_per_process"]
    assert len(shares) == 2 and abs(shares[0] - shares[1]) <= 2, shares
    kinds = [r[0] for r in distributed.query(ch.url, "SELECT event_type FROM event_sink.load_test_runs "
                                                     "WHERE run_id = %(r)s", {"r": run.run_id})]
    assert kinds.count("capacity") == 1 and kinds.count("capacity_step") == 1, kinds


def test_drops_on_a_remote_worker_are_the_generators_limit(topology, ch, sut_redis, tmp_path):
    # 200,000 events/s from one user per worker host: beyond any process (see tests/capacity), so each
    # worker drops most of its share; the master sees the drops only in the workers' reports.
    rate = 200_000
    run = distributed.run(topology, "tracking", [
        "--users", "2", "--spawn-rate", "2", "--pipeline-backend", "redis_bus", "--clickhouse-url", ch.url,
        "--event-bus-redis-url", sut_redis.url, "--event-bus-prefix", f"g{uuid.uuid4().hex[:8]}", "--no-e2e", "--no-monitor",
        "--capacity-search", "--capacity-start-rate", str(rate), "--capacity-max-rate", str(rate), *FAST], tmp_path)
    run.assert_ok()
    cap = json.loads((run.out / "capacity.json").read_text())
    assert cap["generator_limited_at"] == rate and cap["sustained_events_per_second"] == 0, cap["steps"]
    assert cap["bottleneck"]["stage"] == "generator" and "dropped" in cap["bottleneck"]["evidence"], cap["bottleneck"]
    assert "no capacity claimed" in run.logs["master"]
    # The workers' CPU reached the master with their reports, from the first window on (Locust's own
    # figure, in the heartbeat, reads 0 for a worker's first 20 s: "the generator at 0 %").
    assert cap["steps"][0]["generator_cpu_max"] > 0, cap["steps"]
    assert "with the generator at 0 %" not in run.logs["master"]
