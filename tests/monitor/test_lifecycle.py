"""The monitor inside a real Locust run, standalone, and across a ClickHouse outage."""

from __future__ import annotations

import json
import logging
import re
import subprocess
import sys
import threading
import time

import pytest

from backends.celery import DEFAULT_ERB_LISTS, DEFAULT_QUEUES
from monitors.sink import Sink
from stack import Stack
from tests.helpers import REPO, wait_for
from tests.monitor.conftest import locust


class Output:
    """Collects a process's output lines in a thread, so the test can poll them."""

    def __init__(self, proc: subprocess.Popen) -> None:
        self.proc, self.lines = proc, []
        self.thread = threading.Thread(target=self._read, daemon=True)
        self.thread.start()

    def _read(self) -> None:
        for line in self.proc.stdout:
            self.lines.append(line.rstrip("\n"))

    def has(self, pattern: str) -> bool:
        return any(re.search(pattern, line) for line in self.lines)

    def count(self, pattern: str) -> int:
        return sum(1 for line in self.lines if re.search(pattern, line))

    def wait(self, timeout: float = 120) -> int:
        code = self.proc.wait(timeout=timeout)
        self.thread.join(timeout=10)
        return code

    @property
    def text(self) -> str:
        return "\n".join(self.lines)


def run_rows(ch, run_id: str, db: str = "event_sink") -> dict:
    runs = ch.execute(f"SELECT event_type, extra FROM {db}.load_test_runs WHERE run_id = %(r)s ORDER BY timestamp",
                      {"r": run_id})
    return {t: json.loads(e) for t, e in runs}


def test_a_run_writes_start_end_stats_samples_and_request_stats(clickhouse, redis_server, ch, rds, tmp_path):
    out = Output(locust(["--run-time", "3s", "--monitor-interval", "0.5", "--clickhouse-url", clickhouse.url,
                         "--monitor-backend", "celery", "--celery-broker-url", redis_server.url,
                         "--run-tags", "ci,smoke", "--spill-dir", str(tmp_path)],
                        env={"LOCUST_RUN_ID": "t-lifecycle-1", "LOCUST_RESULTS_DIR": str(tmp_path)}))
    assert out.wait() == 0, out.text[-3000:]
    rows = run_rows(ch, "t-lifecycle-1")
    assert "start" in rows, out.text[-3000:]
    assert rows["start"]["tags"] == ["ci", "smoke"] and rows["start"]["backends"] == ["celery"]
    assert rows["end"]["drained"] is True and rows["end"]["exit_code"] == 0
    stats = [json.loads(s) for (s,) in ch.execute(
        "SELECT stats FROM event_sink.load_test_stats WHERE run_id = 't-lifecycle-1' ORDER BY timestamp")]
    assert len(stats) >= 2  # samples over the run (how many a loaded machine takes in 3 s varies)
    # Aspects' shape: clickhouse first, then the backend, with the reference keys.
    assert list(stats[-1])[:2] == ["clickhouse", "celery"]
    assert {"lms_queue_length", "cms_queue_length", "lag"} <= set(stats[-1]["celery"])
    samples = ch.execute("SELECT count() FROM event_sink.load_test_samples WHERE run_id = 't-lifecycle-1' "
                         "AND source = 'host' AND metric = 'cpu_percent'")[0][0]
    assert samples == len(stats)
    requests, = ch.execute("SELECT sum(requests) FROM event_sink.load_test_request_stats "
                           "WHERE run_id = 't-lifecycle-1' AND name = 'work'")[0]
    assert requests > 0  # the run's requests reached the table (their number is the machine's speed)
    meta = ch.execute("SELECT exit_code, tags FROM event_sink.load_test_meta FINAL WHERE run_id = 't-lifecycle-1'")
    assert meta == [(0, ["ci", "smoke"])]
    lines = (tmp_path / "samples.jsonl").read_text().splitlines()
    assert len(lines) == len(stats)  # the run folder holds the same samples


def test_drain_waits_for_the_backlog_and_records_its_time(clickhouse, redis_server, ch, rds, tmp_path):
    rds.lpush("edx.lms.core.default", *range(5))
    out = Output(locust(["--run-time", "2s", "--monitor-interval", "0.3", "--clickhouse-url", clickhouse.url,
                         "--monitor-backend", "celery", "--celery-broker-url", redis_server.url,
                         "--spill-dir", str(tmp_path)], env={"LOCUST_RUN_ID": "t-drain-1"}))
    # The pipeline "works off" its backlog only after a few draining samples have seen it.
    wait_for(lambda: out.count(r"\(draining\).*backlog 5") >= 3, timeout=60, what="draining samples")
    assert out.proc.poll() is None  # still waiting for the drain
    rds.delete("edx.lms.core.default")
    assert out.wait() == 0, out.text[-3000:]
    end = run_rows(ch, "t-drain-1")["end"]
    assert end["drained"] is True and end["drain_seconds"] >= 0.6 and end["max_backlog"] == 5


def test_drain_gives_up_after_the_timeout_and_check_fails(clickhouse, redis_server, ch, rds, tmp_path):
    rds.lpush("events_router_queue_xapi", "stuck")  # ERB's batch buffer never flushed
    out = Output(locust(["--run-time", "1s", "--monitor-interval", "0.3", "--clickhouse-url", clickhouse.url,
                         "--monitor-backend", "celery", "--celery-broker-url", redis_server.url,
                         "--drain-timeout", "1", "--check-drain-time", "10", "--spill-dir", str(tmp_path)],
                        env={"LOCUST_RUN_ID": "t-drain-2"}))
    try:
        assert out.wait() == 6, out.text[-3000:]
    finally:
        rds.delete("events_router_queue_xapi")  # later tests of this Redis start with no backlog
    assert out.has("check failed: drain never finished")
    assert run_rows(ch, "t-drain-2")["end"]["drained"] is False


def test_a_stream_no_group_reads_ends_the_drain_at_once_as_unknown_not_drained(clickhouse, redis_server, ch, rds,
                                                                               tmp_path):
    stream, why = "t-nogroup-analytics", "no consumer group reads stream t-nogroup-analytics"
    rds.delete(stream)
    rds.xadd(stream, {"i": 0})
    out = Output(locust(["--run-time", "1s", "--monitor-interval", "0.3", "--clickhouse-url", clickhouse.url,
                         "--monitor-backend", "redis_bus", "--event-bus-redis-url", redis_server.url,
                         "--event-bus-stream", stream, "--drain-timeout", "600", "--spill-dir", str(tmp_path)],
                        env={"LOCUST_RUN_ID": "t-nogroup-1"}))
    assert out.wait() == 0, out.text[-3000:]  # within 120 s: the 600 s drain timeout was not waited
    assert out.count("lag unknown — is the pipeline consuming") == 1, out.text[-3000:]
    assert out.has(rf"monitor: drain unknown \({why}; not waited on\)")
    end = run_rows(ch, "t-nogroup-1")["end"]
    assert (end["drained"], end["lag_unknown"]) == (None, why)
    lags = ch.execute("SELECT metric, count() FROM event_sink.load_test_samples WHERE run_id = 't-nogroup-1' "
                      "AND source IN ('redis_bus', 'monitor') GROUP BY metric ORDER BY metric")
    assert dict(lags).keys() == {"entries_added", "total_events"}  # no lag, pending or backlog: missing, not 0
    meta = ch.execute("SELECT drained, extra FROM event_sink.load_test_meta FINAL WHERE run_id = 't-nogroup-1'")
    assert meta[0][0] == 0 and json.loads(meta[0][1])["lag_unknown"] == why
    done = subprocess.run([sys.executable, "-m", "loadtesting.report", "t-nogroup-1", "--source", "clickhouse",
                           "--clickhouse-url", clickhouse.url, "--results", str(tmp_path), "--out",
                           str(tmp_path / "report")], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    md = next((tmp_path / "report").glob("*.md")).read_text()
    assert f"The pipeline's backlog is unknown: {why}: lag unknown — is the pipeline consuming?" in md
    assert "after the load stopped" not in md  # the drained finding ("it drained N s after the load stopped")


def test_fail_ratio_check_sets_its_exit_code(clickhouse, ch, tmp_path):
    out = Output(locust(["--run-time", "2s", "--monitor-interval", "1", "--clickhouse-url", clickhouse.url,
                         "--fail-every", "3", "--check-fail-ratio", "0.1", "--spill-dir", str(tmp_path)],
                        env={"LOCUST_RUN_ID": "t-check-1"}))
    assert out.wait() == 3, out.text[-3000:]
    assert out.has(r"check failed: failure ratio 0\.3")
    assert run_rows(ch, "t-check-1")["end"]["exit_code"] == 3


@pytest.mark.parametrize(("args", "message"), [
    (["--monitor-backend", "rabbit"],
     "error: --monitor-backend 'rabbit' is unknown; expected one of: celery, redis_bus, kafka_bus, vector"),
    (["--monitor-interval", "0"], "locust: error: argument --monitor-interval: '0': expected a number > 0"),
    (["--drain-timeout", "-1"], "locust: error: argument --drain-timeout: '-1': expected a number >= 0"),
    (["--clickhouse-url", "http://127.0.0.1:8123"],
     "error: ClickHouse URL 'http://127.0.0.1:8123' is not clickhouse://user[:password]@host[:port]/database"),
    (["--sampler-timeout", "rdis=3"],
     "error: --sampler-timeout rdis=…: no sampler 'rdis'; expected one of: clickhouse, celery, redis_bus, kafka_bus, "
     "vector, host, e2e"),
    (["--clickhouse-timeout", "0"], "locust: error: argument --clickhouse-timeout: '0': expected a number > 0"),
])
def test_bad_options_are_one_line_errors(args, message):
    out = Output(locust(["--run-time", "1s", *args]))
    assert out.wait() != 0
    assert message in out.lines and "Traceback" not in out.text


@pytest.fixture(scope="module")
def outage(tmp_path_factory):
    """A 12 s run whose ClickHouse is stopped after two samples and started again four samples later:
    (the run's output, the samples stored, the samples logged)."""
    tmp_path = tmp_path_factory.mktemp("outage")
    own = Stack(tmp_path / "stack", free_ports=True)
    try:
        ch_url = own.start("clickhouse")["clickhouse"].url
        from plumbing import chclient

        client = chclient.connect(ch_url)
        out = Output(locust(["--run-time", "12s", "--monitor-interval", "0.5", "--clickhouse-url", ch_url,
                             "--spill-dir", str(tmp_path / "spill")], env={"LOCUST_RUN_ID": "t-outage-1"}))

        def stored() -> int:
            try:
                return client.execute("SELECT count() FROM event_sink.load_test_stats WHERE run_id = 't-outage-1'")[0][0]
            except Exception:  # noqa: BLE001 - the table may not exist yet
                return 0

        wait_for(lambda: stored() >= 2, timeout=60, what="first samples in ClickHouse")
        client.disconnect()
        own.stop("clickhouse")
        wait_for(lambda: out.has("unreachable"), timeout=30, what="the monitor noticing the outage")
        missed_from = out.count(r"monitor t-outage-1")
        wait_for(lambda: out.count(r"monitor t-outage-1") >= missed_from + 4, timeout=30, what="samples during outage")
        own.start("clickhouse")
        assert out.wait() == 0, out.text[-3000:]
        yield out, stored(), out.count(r"monitor t-outage-1(?: \(draining\))?: ")
    finally:
        own.stop()


def test_clickhouse_outage_mid_run_loses_no_sample(outage):
    _out, stored, logged = outage
    assert stored == logged  # every sample taken, including those during the outage


def test_an_outage_is_one_line_when_it_starts_and_one_when_it_ends(outage):
    out = outage[0]
    assert "Traceback" not in out.text  # clickhouse-driver's per-attempt tracebacks are quieted
    said = "\n".join(line for line in out.lines if "ClickHouse" in line)
    assert out.count(r"ClickHouse clickhouse://\S+ unreachable \(\w+: ") == 1, said
    back = [line for line in out.lines if "is back after" in line]
    assert len(back) == 1, out.text[-3000:]
    figures = re.search(r"is back after [0-9.]+ s: (\d+) rows spilled to disk and (\d+) replayed, "
                        r"(\d+) buffered rows written", back[0])
    assert figures, back[0]
    spilled, replayed, buffered = map(int, figures.groups())
    assert spilled == replayed  # nothing spilled stays behind
    assert buffered > 0  # the samples taken during the outage


def test_an_outage_is_recalled_at_most_every_remind_interval(tmp_path, caplog):
    sink = Sink("clickhouse://default@127.0.0.1:1/default", "event_sink", tmp_path, name="quiet", retry_interval=0,
                remind_every=0.3)

    def lines() -> list[logging.LogRecord]:
        sink.add("load_test_stats", {"run_id": "x", "timestamp": 0, "stats": "{}"})
        sink.flush(force=True)
        return [r for r in caplog.records if r.name == "monitors.sink"]

    with caplog.at_level(logging.WARNING, logger="monitors.sink"):
        said = wait_for(lambda: (lambda got: got if len(got) >= 3 else None)(lines()), timeout=30,
                        what="two reminders")
    assert "unreachable (" in said[0].getMessage() and sink.failures > len(said)  # not one line per attempt
    assert all("still unreachable after" in r.getMessage() for r in said[1:])
    gaps = [b.created - a.created for a, b in zip(said, said[1:], strict=False)]
    assert min(gaps) >= 0.29  # the throttle runs on the monotonic clock, records carry wall time


def test_memory_bound_spills_to_disk_before_clickhouse_returns(tmp_path):
    sink = Sink("clickhouse://default@127.0.0.1:1/default", "event_sink", tmp_path, name="bounded", max_rows=10)
    for i in range(25):
        sink.add("load_test_stats", {"run_id": "x", "timestamp": i, "stats": "{}"})
    assert sink.pending_rows() <= 10
    assert len((tmp_path / "bounded.spill.jsonl").read_text().splitlines()) >= 15


def test_standalone_monitor_follows_a_run_until_it_drains(clickhouse, redis_server, ch, rds, tmp_path):
    from monitors import schema

    schema.ensure(ch, "event_sink")
    rds.delete(*DEFAULT_QUEUES, *DEFAULT_ERB_LISTS)  # the backlog is this test's two messages, whatever ran before
    proc = subprocess.Popen([sys.executable, "-m", "monitors", "--clickhouse-url", clickhouse.url, "--sleep-time",
                             "0.3", "--monitor-backend", "celery", "--celery-broker-url", redis_server.url,
                             "--spill-dir", str(tmp_path), "--drain-timeout", "60"],
                            cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    out = Output(proc)
    rid = f"t-standalone-{int(time.time())}"
    now = time.time()
    ch.execute("INSERT INTO event_sink.load_test_runs (run_id, timestamp, event_type, extra) VALUES",
               [(rid, int(now), "start", "{}")])
    wait_for(lambda: out.has(f"monitoring run {rid}"), timeout=30, what="the monitor to pick up the run")
    rds.lpush("edx.cms.core.default", "a", "b")
    ch.execute("INSERT INTO event_sink.load_test_runs (run_id, timestamp, event_type, extra) VALUES",
               [(rid, int(now) + 1, "end", "{}")])
    wait_for(lambda: out.has("has ended"), timeout=30, what="the end row to be seen")
    wait_for(lambda: out.count(r"\(draining\).*backlog 2$") >= 2, timeout=30,
             what="draining samples", on_timeout=lambda: out.text[-3000:])
    assert proc.poll() is None
    rds.delete("edx.cms.core.default")
    assert out.wait(60) == 0, out.text[-3000:]
    assert ch.execute("SELECT count() FROM event_sink.load_test_stats WHERE run_id = %(r)s", {"r": rid})[0][0] >= 3
