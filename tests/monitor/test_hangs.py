"""A server that hangs (paused with SIGSTOP: connections stay open, nothing answers) never stops the
watching: the monitor samples every interval whatever its ClickHouse sink or a sampled server does."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from datetime import datetime

import pytest

from plumbing import chclient
from stack import Stack
from tests.helpers import REPO, wait_for
from tests.monitor.conftest import locust
from tests.monitor.test_lifecycle import Output

INTERVAL = 1.0  # --monitor-interval of these runs: "on time" is a gap of at most 2 intervals


def samples(results) -> list[dict]:
    return [json.loads(line) for line in (results / "samples.jsonl").read_text().splitlines()]


def gaps(times: list[float]) -> list[float]:
    return [b - a for a, b in zip(times, times[1:], strict=False)]


def pause(pids: list[int]) -> None:
    for pid in pids:
        os.kill(pid, signal.SIGSTOP)


def resume(pids: list[int]) -> None:
    for pid in pids:
        os.kill(pid, signal.SIGCONT)


def sample_lines(out: Output, run_id: str) -> int:
    return out.count(rf"monitor {run_id}(?: \(draining\))?: ")


@pytest.fixture(scope="module")
def own_clickhouse(tmp_path_factory):
    """A ClickHouse of this module's own (pausing the session's would stall other tests): (url, pids)."""
    own = Stack(tmp_path_factory.mktemp("own-ch") / "stack", free_ports=True)
    pids: list[int] = []
    try:
        url = own.start("clickhouse")["clickhouse"].url
        pids = own.pids("clickhouse")
        yield url, pids
    finally:
        resume(pids)  # never leave a stopped server behind
        own.stop()


@pytest.fixture(scope="module")
def clickhouse_hang(own_clickhouse, tmp_path_factory):
    """A run whose ClickHouse is paused after two stored samples, for longer than the client's 3 s
    timeout (until the monitor said so and took six more samples), then resumed; the run is ended
    by SIGTERM once the rows are flowing again. (output, run folder, ClickHouse client, run id)."""
    tmp = tmp_path_factory.mktemp("ch-hang")
    url, pids = own_clickhouse
    try:
        client = chclient.connect(url)
        rid = "t-ch-hang-1"
        results = tmp / "results"
        results.mkdir()
        out = Output(locust(["--run-time", "10m", "--monitor-interval", str(INTERVAL), "--clickhouse-url", url,
                             "--clickhouse-timeout", "3", "--clickhouse-connect-timeout", "1",
                             "--spill-dir", str(tmp / "spill")],
                            env={"LOCUST_RUN_ID": rid, "LOCUST_RESULTS_DIR": str(results)}, start_new_session=True))

        def stored() -> int:
            try:
                return client.execute("SELECT count() FROM event_sink.load_test_stats WHERE run_id = %(r)s",
                                      {"r": rid})[0][0]
            except Exception:  # noqa: BLE001 - the table may not exist yet
                return 0

        wait_for(lambda: stored() >= 2, timeout=90, what="first samples in ClickHouse", on_timeout=lambda: out.text)
        client.disconnect()
        pause(pids)
        paused_at = len(samples(results))
        # Longer than the client's timeout: the sink has given up on a write (said so) ...
        wait_for(lambda: out.has("unreachable"), timeout=60, what="the sink noticing the hang",
                 on_timeout=lambda: out.text[-3000:])
        # ... and samples go on meanwhile.
        wait_for(lambda: len(samples(results)) >= paused_at + 6, timeout=60, what="samples during the hang",
                 on_timeout=lambda: out.text[-3000:])
        resumed_at = len(samples(results))
        resume(pids)
        wait_for(lambda: out.has("is back after"), timeout=60, what="the sink writing again",
                 on_timeout=lambda: out.text[-3000:])
        wait_for(lambda: len(samples(results)) >= resumed_at + 3, timeout=60, what="samples after the hang")
        out.proc.send_signal(signal.SIGTERM)
        code = out.wait(120)
        yield out, code, results, chclient.connect(url), rid, (paused_at, resumed_at)
    finally:
        resume(pids)


def test_samples_are_taken_every_interval_while_clickhouse_hangs(clickhouse_hang):
    out, code, results, _ch, _rid, (paused_at, resumed_at) = clickhouse_hang
    assert code == 143, out.text[-3000:]  # ended by the test's SIGTERM, nothing else
    times = [s["time"] for s in samples(results)]
    assert max(gaps(times)) <= 2 * INTERVAL, (gaps(times), out.text[-3000:])
    assert resumed_at - paused_at >= 6
    # Locust's interval rows are cut on time too.
    rows = [json.loads(line) for line in (results / "request_stats.jsonl").read_text().splitlines()]
    cuts = sorted({r["time_ms"] / 1000 for r in rows if r["timing"] == "service" and r["name"] == "Aggregated"})
    assert max(gaps(cuts)) <= 2 * INTERVAL, gaps(cuts)


def test_every_sample_and_interval_row_is_stored_after_the_hang(clickhouse_hang):
    out, _code, results, ch, rid, _ = clickhouse_hang
    taken = samples(results)
    stored = ch.execute("SELECT count(DISTINCT time_ms) FROM event_sink.load_test_samples WHERE run_id = %(r)s",
                        {"r": rid})[0][0]
    assert stored == len(taken), out.text[-3000:]
    rows = [json.loads(line) for line in (results / "request_stats.jsonl").read_text().splitlines()]
    keys = {(r["time_ms"], r["timing"], r["name"]) for r in rows}
    in_ch = set(ch.execute("SELECT DISTINCT time_ms, timing, name FROM event_sink.load_test_request_stats "
                           "WHERE run_id = %(r)s", {"r": rid}))
    assert keys == in_ch
    runs = {t for (t,) in ch.execute("SELECT event_type FROM event_sink.load_test_runs WHERE run_id = %(r)s",
                                     {"r": rid})}
    assert {"start", "end"} <= runs


def test_the_hang_is_one_line_when_it_starts_and_one_when_it_ends(clickhouse_hang):
    out = clickhouse_hang[0]
    assert out.count(r"ClickHouse clickhouse://\S+ unreachable \(") == 1, out.text[-3000:]
    back = [line for line in out.lines if "is back after" in line]
    assert len(back) == 1, out.text[-3000:]
    m = re.search(r"is back after ([0-9.]+) s: \d+ rows spilled to disk and \d+ replayed, (\d+) buffered rows written",
                  back[0])
    assert m and float(m.group(1)) > 3 and int(m.group(2)) > 0, back[0]  # longer than the timeout; rows waited


def test_the_generator_keeps_its_rate_while_clickhouse_hangs(clickhouse_hang):
    _out, _code, results, _ch, _rid, (paused_at, resumed_at) = clickhouse_hang
    taken = samples(results)
    hang_from, hang_to = taken[paused_at]["time"], taken[resumed_at - 1]["time"]
    rows = [json.loads(line) for line in (results / "request_stats.jsonl").read_text().splitlines()]
    work = [r for r in rows if r["timing"] == "service" and r["name"] == "work"]

    def rate(rows: list[dict]) -> float:
        return sum(r["requests"] for r in rows) / sum(r["interval_s"] for r in rows)

    before = rate([r for r in work if r["timestamp"] < hang_from])
    during = rate([r for r in work if hang_from < r["timestamp"] <= hang_to])
    assert during > 0.5 * before, (before, during)  # the users never wait on the monitor


def test_the_standalone_monitor_samples_on_while_clickhouse_hangs(own_clickhouse, tmp_path):
    url, pids = own_clickhouse
    ch = chclient.connect(url)
    from monitors import schema

    schema.ensure(ch, "event_sink")
    rid = "t-standalone-hang-1"
    ch.execute("INSERT INTO event_sink.load_test_runs (run_id, timestamp, event_type, extra) VALUES",
               [(rid, int(time.time()), "start", "{}")])
    proc = subprocess.Popen([sys.executable, "-u", "-m", "monitors", "--run-id", rid, "--clickhouse-url", url,
                             "--monitor-interval", str(INTERVAL), "--clickhouse-timeout", "2",
                             "--clickhouse-connect-timeout", "1", "--spill-dir", str(tmp_path)],
                            cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    out = Output(proc)
    try:
        wait_for(lambda: sample_lines(out, rid) >= 2, timeout=60, what="first samples", on_timeout=lambda: out.text)
        pause(pids)
        wait_for(lambda: out.has("unreachable"), timeout=60, what="the hang noticed", on_timeout=lambda: out.text)
        during = sample_lines(out, rid)
        wait_for(lambda: sample_lines(out, rid) >= during + 4, timeout=60, what="samples during the hang")
    finally:
        resume(pids)
    wait_for(lambda: out.has("is back after"), timeout=60, what="the sink writing again", on_timeout=lambda: out.text)
    ch = chclient.connect(url)
    ch.execute("INSERT INTO event_sink.load_test_runs (run_id, timestamp, event_type, extra) VALUES",
               [(rid, int(time.time()), "end", "{}")])
    assert out.wait(60) == 0, out.text[-3000:]  # nothing to drain: ends at the first sample after the end row
    stamps = [datetime.strptime(m.group(1), "%Y-%m-%d %H:%M:%S,%f").timestamp()
              for line in out.lines if (m := re.match(rf"(\S+ \S+) INFO monitor {rid}", line))]
    assert max(gaps(stamps)) <= 2 * INTERVAL, gaps(stamps)
    stored = ch.execute("SELECT count(DISTINCT time_ms) FROM event_sink.load_test_samples WHERE run_id = %(r)s",
                        {"r": rid})[0][0]
    assert stored == len(stamps)


def test_the_kafka_latency_writer_never_waits_for_a_hung_clickhouse(own_clickhouse, tmp_path):
    from monitors.kafka_latency import WindowWriter

    url, pids = own_clickhouse
    writer = WindowWriter(url, "t-kafka-hang-1", "out", str(tmp_path), connect_timeout=1, timeout=3)

    def window(n: int) -> dict:
        return {"window": str(n), "messages": 100, "avg_ms": 1.0, "p50_ms": 1, "p95_ms": 1, "p99_ms": 1, "max_ms": 1,
                "msgs_per_s": 1.0}

    writer.add(window(0))
    writer.flush()
    def stored() -> list[int]:
        query = "SELECT DISTINCT stat_window FROM event_sink.load_test_kafka_latency WHERE run_id = 't-kafka-hang-1'"
        try:
            return sorted(int(w) for (w,) in chclient.connect(url).execute(query))
        except Exception:  # noqa: BLE001 - its database or table not created yet
            return []

    wait_for(lambda: stored() == [0], timeout=60, what="the first window stored")
    pause(pids)
    try:
        for n in range(1, 6):  # each flush is a wake-up: the reading goes on at once (the write waits 3 s)
            t0 = time.monotonic()
            writer.add(window(n))
            writer.flush()
            assert time.monotonic() - t0 < 1.0
        wait_for(lambda: writer.sink.failures >= 1, timeout=60, what="the hung write given up")
    finally:
        resume(pids)
    writer.close()
    # Every window stored (at least once: an INSERT the paused server had received whole is applied
    # when it resumes, and written again by the sink that gave up on it; docs/monitor.md).
    assert stored() == list(range(6))


@pytest.fixture(scope="module")
def redis_hang(tmp_path_factory):
    """A run sampling its own Redis (redis_bus) whose server is paused for a few samples, then resumed."""
    tmp = tmp_path_factory.mktemp("redis-hang")
    own = Stack(tmp / "stack", free_ports=True)
    pids: list[int] = []
    try:
        rds = own.start("redis")["redis"]
        pids = own.pids("redis")
        results = tmp / "results"
        results.mkdir()
        rid = "t-redis-hang-1"
        out = Output(locust(["--run-time", "10m", "--monitor-interval", str(INTERVAL),
                             "--monitor-backend", "redis_bus", "--event-bus-redis-url", rds.url,
                             "--sampler-timeout", "redis_bus=1", "--clickhouse-url",
                             "clickhouse://default@127.0.0.1:1/default", "--spill-dir", str(tmp / "spill")],
                            env={"LOCUST_RUN_ID": rid, "LOCUST_RESULTS_DIR": str(results)}, start_new_session=True))

        def answered() -> int:
            return sum(1 for s in samples(results) if "error" not in s["stats"]["redis_bus"]) \
                if (results / "samples.jsonl").exists() else 0

        wait_for(lambda: answered() >= 2, timeout=90, what="samples of Redis", on_timeout=lambda: out.text[-3000:])
        pause(pids)
        paused_line = len(out.lines)  # (a loaded machine may have made the sampler late before: not this episode)
        wait_for(lambda: any("redis_bus sampler" in line for line in out.lines[paused_line:]), timeout=60,
                 what="the late sampler said", on_timeout=lambda: out.text[-3000:])
        said_at = len(samples(results))
        wait_for(lambda: len(samples(results)) >= said_at + 4, timeout=60, what="samples during the pause")
        resumed_at = len(samples(results))
        resume(pids)
        pids = []
        wait_for(lambda: any("answers again" in line for line in out.lines[paused_line:]), timeout=60,
                 what="the sampler recovering", on_timeout=lambda: out.text[-3000:])
        wait_for(lambda: len(samples(results)) >= resumed_at + 6, timeout=60, what="samples after the pause")
        out.proc.send_signal(signal.SIGTERM)
        code = out.wait(120)
        episode = out.lines[paused_line:]
        episode = episode[:1 + next(i for i, line in enumerate(episode) if "answers again" in line)]
        yield out, code, samples(results), (said_at, resumed_at), episode
    finally:
        resume(pids)
        own.stop()


def test_a_hung_sampled_server_holds_up_no_other_source(redis_hang):
    out, code, taken, (said_at, resumed_at), _ = redis_hang
    assert code == 143, out.text[-3000:]
    times = [s["time"] for s in taken]
    assert max(gaps(times)) <= 2 * INTERVAL, gaps(times)
    assert all("cpu_percent" in s["stats"]["host"] for s in taken)  # the host on time in every sample
    # While Redis is paused its figures are missing, said so in the sample.
    assert all(s["stats"]["redis_bus"].get("error") for s in taken[said_at:resumed_at])
    assert any(s["stats"]["redis_bus"].get("missing") for s in taken[said_at:resumed_at])
    assert all(s["backlog"] == -1 for s in taken[said_at:resumed_at])  # unknown: never "drained"


def test_a_hung_sampled_server_recovers_by_itself_said_once(redis_hang):
    out, _code, taken, (_, resumed_at), episode = redis_hang
    assert any("total_events" in s["stats"]["redis_bus"] for s in taken[resumed_at:])  # its figures are back
    said = [line for line in episode if "redis_bus sampler" in line]
    assert len(said) == 2, said  # one line when it went missing (no reminder within 30 s), one when back
    assert re.search(r"monitor: redis_bus sampler (no answer within 1 s|failed)", said[0]), said
    assert re.search(r"redis_bus sampler answers again after [0-9.]+ s \(\d+ samples missing\)", said[1]), said
