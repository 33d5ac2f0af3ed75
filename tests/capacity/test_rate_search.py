"""The rate capacity search end to end, against a stand-in pipeline whose capacity is exactly known
(tests.capacity.standin: a redis_bus consumer limited to R events/s at one stage)."""

from __future__ import annotations

import json
import os
import signal
import subprocess

import pytest

from plumbing import chclient
from tests.capacity.conftest import LOCUSTFILE
from tests.helpers import REPO, run_locust, start_locust, wait_for


def test_a_slow_consumer_is_found_at_its_rate_and_named(standin, search, clickhouse):
    rate = 45  # the consumer's limit; steps 30, 50 (fails), 40: resolution 10
    prefix, db = standin("consumer", rate)
    run = search(prefix, db, "--monitor-backend", "redis_bus", "--capacity-start-rate", "30",
                 "--capacity-rate-step", "20", "--capacity-rate-resolution", "10")
    assert run.done.returncode == 0, run.output[-3000:]
    cap = run.capacity
    assert rate - 10 <= cap["sustained_events_per_second"] <= rate, run.output[-5000:]
    assert cap["lowest_failing_above"] > rate, cap
    assert cap["bottleneck"]["stage"] == "bus consumers", cap["bottleneck"]
    by_target = {s["target"]: s for s in cap["steps"]}
    failed = by_target[50.0]
    assert failed["backlog"]["bus"]["verdict"] == "growing" and failed["drain_s"] is not None
    # The failed step's backlog was drained before the next step, which passed (40 < 45).
    after = cap["steps"][cap["steps"].index(failed) + 1]
    assert after["target"] == 40.0 and after["verdict"] == "pass", after
    assert "capacity search: 50 events/s → offered" in run.output and "min left" in run.output
    # ClickHouse: the run's capacity row and a row per step.
    client = chclient.connect(clickhouse.url)
    rows = client.execute("SELECT event_type, extra FROM event_sink.load_test_runs WHERE run_id = %(r)s",
                          {"r": run.run_id})
    kinds = [t for t, _ in rows]
    assert kinds.count("capacity_step") == len(cap["steps"]) and kinds.count("capacity") == 1
    stored = json.loads(next(e for t, e in rows if t == "capacity"))
    assert stored["sustained_events_per_second"] == cap["sustained_events_per_second"]


def test_events_the_stream_trimmed_unread_are_not_waited_for_between_steps(standin, search):
    # A stream capped at ~100 entries (edx-event-bus-redis' MAXLEN ~, small): the failed 90/s step's
    # consumers at 40/s fall behind and the stream trims what they did not read. Those events will
    # never be stored; the drain before the next step waits only for what is still in the stream.
    prefix, db = standin("consumer", 40)
    run = search(prefix, db, "--monitor-backend", "redis_bus", "--redis-stream-maxlen", "100",
                 "--capacity-start-rate", "30", "--capacity-rate-step", "60", "--capacity-rate-resolution", "30")
    assert run.done.returncode == 0, run.output[-3000:]
    failed = next(s for s in run.capacity["steps"] if s["target"] == 90.0)
    assert failed["verdict"] == "fail" and failed["drain_s"] < 30, failed  # --capacity-drain-timeout 30
    after = run.capacity["steps"][run.capacity["steps"].index(failed) + 1]
    assert after["leftover"] == 0, after
    assert "lost unread, not waited for" in run.output, run.output[-3000:]


def test_a_slow_insert_path_under_two_processes_is_found_and_named_clickhouse(standin, search):
    rate = 110  # inserts limited; the bus is read at once; steps 90, 130 (fails), 110: resolution 20
    prefix, db = standin("insert", rate)
    run = search(prefix, db, "--monitor-backend", "redis_bus", "--capacity-start-rate", "90",
                 "--capacity-rate-step", "40", "--capacity-rate-resolution", "20", "--processes", "2",
                 users=100)  # 50 a process: a stall of this loaded machine drops no instant
    assert run.done.returncode == 0, run.output[-3000:]
    cap = run.capacity
    assert rate - 20 <= cap["sustained_events_per_second"] <= rate * 1.05, run.output[-4000:]
    assert cap["bottleneck"]["stage"] == "clickhouse insert path", cap["bottleneck"]
    # Split, not copied: what two processes sent together, as stored in ClickHouse (measured apart from
    # the search's own plan), is the target of each passing step, not twice it.
    for s in cap["steps"]:
        if s["verdict"] == "pass":
            assert abs(s["stored_per_s"] - s["target"]) <= 0.15 * s["target"], s
        assert s["sent_per_s_reported"] < 1.5 * s["target"], s
    assert "open model: planned" in run.output


def test_a_stream_no_group_reads_has_no_bus_series_and_is_judged_end_to_end(standin, search):
    prefix, db = standin("insert", 1000, "--no-group")  # read with XREAD: the stream records no reader
    run = search(prefix, db, "--monitor-backend", "redis_bus", "--capacity-start-rate", "20",
                 "--capacity-max-rate", "20")
    assert run.done.returncode == 0, run.output[-3000:]
    step = run.capacity["steps"][0]
    assert "bus" not in step["backlog"], step  # unknown, not a flat 0
    assert step["backlog"]["sent − stored"]["verdict"] == "flat" and step["verdict"] == "pass", step
    why = f"no consumer group reads stream {prefix}-analytics: lag unknown — is the pipeline consuming?"
    assert run.output.count(f"capacity search: {why}") == 1, run.output[-3000:]
    assert run.output.count(f"monitor: {why}") == 1


def test_a_rate_beyond_the_generator_is_its_limit_and_no_capacity_is_claimed(search):
    # One process of queueing (pipelined) sends offers some thousands of events/s, even from one user
    # (bench/arrival.py: ~6–20 k/s here); 200 k/s is beyond any machine's one process by far, so the
    # generator is the limit whatever this machine's speed.
    rate = 200_000
    run = search("cnone", "xapi_cnone", "--capacity-start-rate", str(rate), "--capacity-max-rate", str(rate), "--no-e2e",
                 "--no-monitor", "--capacity-ramp-time", "0", "--capacity-settle-time", "1", "--capacity-step-time", "3",
                 users=1)
    assert run.done.returncode == 0, run.output[-3000:]
    cap = run.capacity
    assert cap["generator_limited_at"] == rate and cap["sustained_events_per_second"] == 0, cap["steps"]
    assert cap["bottleneck"]["stage"] == "generator" and len(cap["steps"]) == 1
    # Its CPU is measured within the first seconds too (Locust's own figure reads 0 for its first 20 s).
    assert cap["steps"][0]["generator_cpu_max"] > 0, cap["steps"]
    assert f"the generator was the limit at {rate} events/s" in run.output
    assert "no capacity claimed" in run.output


def test_a_bad_rate_option_is_a_one_line_error():
    done = run_locust(["-f", LOCUSTFILE, "--headless", "--no-monitor", "--capacity-search",
                       "--capacity-start-rate", "0"], timeout=60)
    assert done.returncode != 0
    assert "argument --capacity-start-rate: '0': expected a number > 0" in done.stderr
    assert "Traceback" not in done.stderr


def test_a_rate_given_beside_the_search_is_said_not_used(tmp_path):
    # conf/tracking.conf holds a fixed run's rate, and users keep it beside --capacity-search: the
    # search runs, and says the rate is not its (the web UI's form refuses one: test_rate_search_webui).
    log = tmp_path / "locust.log"
    (tmp_path / "results").mkdir()
    with log.open("w") as out:
        proc = start_locust(["-f", LOCUSTFILE, "--config", str(REPO / "conf" / "tracking.conf"), "--headless",
                             "--no-monitor", "--no-e2e", "--no-sar", "--capacity-search", "-u", "5", "-r", "5",
                             "--pipeline-backend", "vector", "--vector-log-file", str(tmp_path / "tracking.log")],
                            env={"LOCUST_RESULTS_DIR": str(tmp_path / "results")}, stdout=out, stderr=subprocess.STDOUT)
    try:
        wait_for(lambda: "capacity search: from" in log.read_text(), timeout=120, what="the search's start",
                 on_timeout=lambda: log.read_text()[-3000:])
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=120)
    text = log.read_text()
    assert "--events-per-second 1000 is not used: a capacity search sets the rate itself" in text, text[-3000:]
    assert "Traceback" not in text, text[-3000:]


def test_a_slow_kafka_consumer_is_named_from_the_groups_lag(standin, search):
    # kafka_bus, the bus sampled as make pipeline-capacity samples it (the group's lag from committed
    # and end offsets): one step at twice the consumer's limit fails, and its stage is named from the
    # lag growing while ClickHouse keeps pace. (Tansu's end offset is short by at most the last
    # produce batch: a bounded offset, docs/capacity.md.)
    prefix, db = standin("consumer", 30, bus="kafka_bus")
    run = search(prefix, db, "--monitor-backend", "kafka_bus", "--capacity-start-rate", "60",
                 "--capacity-max-rate", "60", "--capacity-rate-resolution", "60", bus="kafka_bus")
    assert run.done.returncode == 0, run.output[-3000:]
    cap = run.capacity
    assert [s["target"] for s in cap["steps"]] == [60.0], cap["steps"]
    bus = cap["steps"][0]["backlog"]["bus"]
    assert bus["verdict"] == "growing" and bus["slope"] > 15, bus  # ~30/s: 60 offered, 30 read
    assert cap["bottleneck"]["stage"] == "bus consumers", cap["bottleneck"]
    assert "bus lag grew" in cap["bottleneck"]["evidence"], cap["bottleneck"]


@pytest.mark.parametrize(("sig", "code"), [(signal.SIGTERM, 143), (signal.SIGINT, 130)])
def test_a_headless_search_ends_on_a_signal_as_interrupted_with_its_partial_result(tmp_path, sig, code):
    # Locust installs its SIGTERM handler only after a headless shape has ended: the search went on
    # for good after SIGTERM, and Ctrl-C ended it with 0 as if it had run its course.
    log, results = tmp_path / "locust.log", tmp_path / "results"
    results.mkdir()  # the run folder, as loadtesting.run makes it
    with log.open("w") as out:
        proc = start_locust(["-f", LOCUSTFILE, "--headless", "--no-monitor", "--no-e2e", "--no-sar", "--capacity-search",
                             "-u", "5", "-r", "5", "--pipeline-backend", "vector",
                             "--vector-log-file", str(tmp_path / "tracking.log")],
                            env={"LOCUST_RESULTS_DIR": str(results)}, stdout=out, stderr=subprocess.STDOUT)
    try:
        wait_for(lambda: "capacity search: from" in log.read_text(), timeout=120, what="the search's start",
                 on_timeout=lambda: log.read_text()[-3000:])
        os.killpg(proc.pid, sig)  # as a terminal's Ctrl-C or a supervisor's stop reaches the process group
        assert proc.wait(timeout=120) == code, log.read_text()[-3000:]
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    text = log.read_text()
    assert f"run stopped by {sig.name} before its planned end; exit code {code}" in text, text[-3000:]
    assert json.loads((results / "capacity.json").read_text())["stopped"] is True
