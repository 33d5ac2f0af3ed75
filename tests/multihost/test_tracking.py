"""Tracking events in the open model from two worker hosts, through the reference pipeline on the system's
host (Redis bus → event-routing-backends → ClickHouse on a host of its own): the planned rate is split
exactly between the workers, every event sent is stored, and the counts agree everywhere."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import uuid
from pathlib import Path

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
    print(f"ground truth tracking: planned {om['planned_per_process']}, started {om['started']}, dropped "
          f"{om['dropped']}, sent {e2e['sent']} = stored {e2e['stored']} = xAPI rows = stats.json = interval rows")
    assert distributed.run_rows(ch.url, run.run_id) == ["end", "start"]


SKEW_S = -3.0  # worker w2's clock, behind the others by 3 s (libfaketime)
FAKETIME = "/usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1"


@pytest.mark.skipif(not Path(FAKETIME).exists(), reason="libfaketime (Debian faketime; make setup installs it)")
def test_a_worker_clock_offset_is_measured_and_kept_out_of_the_end_to_end_figures(topology, ch, sut_redis,
                                                                                   pipeline, tmp_path):
    db, prefix = pipeline
    skewed = {"LD_PRELOAD": FAKETIME, "FAKETIME": f"{SKEW_S:+g}s", "FAKETIME_DONT_FAKE_MONOTONIC": "1"}
    run = distributed.run(topology, "tracking", [
        "--users", "40", "--spawn-rate", "40", "--pipeline-backend", "redis_bus", "--xapi-database", db,
        "--clickhouse-url", ch.url, "--event-bus-prefix", prefix, "--event-bus-redis-url", sut_redis.url,
        "--monitor-backend", "redis_bus", "--num-events", str(EVENTS), "--events-per-second", str(RATE),
        "--monitor-interval", "1", "--drain-timeout", "60", "--no-sar"], tmp_path, worker_env={"w2": skewed})
    run.assert_ok()
    end = json.loads(distributed.query(ch.url, "SELECT extra FROM event_sink.load_test_runs WHERE run_id = %(r)s "
                                               "AND event_type = 'end'", {"r": run.run_id})[0][0])
    workers = end["clocks"]["workers"]
    assert len(workers) == 2
    # The skewed worker is the one whose offset (master − worker) is about +3 s; the true offsets are
    # +3000 ms and 0 ms, and each measurement is within its stated uncertainty of the truth.
    truth = {i: (-SKEW_S * 1000 if abs(r["offset_ms"]) > 1000 else 0.0) for i, r in workers.items()}
    assert sorted(truth.values()) == [0.0, -SKEW_S * 1000], workers
    for i, r in workers.items():
        assert abs(r["offset_ms"] - truth[i]) <= r["uncertainty_ms"] + 0.01, workers
        assert r["uncertainty_ms"] < 50, workers  # a few ms on an idle machine: the shortest of 16 round trips
    # End to end: every event is found (a clock 3 s behind stamps events before the run's start on the
    # master's clock) and the skewed worker's latencies are not 3 s longer than the other's.
    e2e = end["e2e"]
    assert e2e["stored"] == e2e["sent"] == end["open_model"]["started"] and e2e["missing"] == 0, e2e
    p50 = e2e["p50_ms_by_process"]
    assert len(p50) == 2 and abs(p50["0"] - p50["1"]) < 1000 * abs(SKEW_S) / 2, e2e
    # The report names each worker's offset and its uncertainty.
    from loadtesting import report

    md = report.render(report.load(run.run_id, tmp_path, "clickhouse", ch.url), tmp_path / "report").read_text()
    clocks = md[md.index("## Clocks"):]
    for i, r in workers.items():
        assert f"| {i} | {r['offset_ms']:+.1f} | ± {r['uncertainty_ms']:.1f} |" in clocks, clocks
    assert "were corrected by these offsets" in clocks
    print(f"clock offsets: {workers}; e2e p50 by worker {p50}")
