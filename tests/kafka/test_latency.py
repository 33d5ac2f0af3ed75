"""Kafka end-to-end latency: windows, units, restarts, loss and duplicates, on real Tansu."""

from __future__ import annotations

import json
import random
import re
import subprocess
import sys
import time

from monitors.kafka_latency import RECENT, LatencyStats, SeqRanges, check_start
from plumbing.locust_csv import read_locust_stats
from plumbing.percentile import percentile
from tests.helpers import REPO, log_of, run_locust, wait_for
from tests.kafka.conftest import latency_cli, produce_output, producer


def total(stdout: str) -> dict:
    line = [x for x in stdout.splitlines() if x.startswith("[TOTAL]")][-1]
    m = re.search(r"- (\d+) msgs read, avg ([\d.]+) ms, p50 ([\d.]+) p95 ([\d.]+) p99 ([\d.]+) ms, [\d.]+ msg/s; errors: "
                  r"(\d+) negative, (\d+) in seconds, (\d+) invalid; (\d+) duplicates; timestamps: (.*)$", line)
    keys = ("messages", "avg", "p50", "p95", "p99", "negative", "in_seconds", "invalid", "duplicates")
    out = {k: float(v) for k, v in zip(keys, m.groups()[:9], strict=True)}
    out["timestamps"] = m.group(10)
    return out


def test_stat_windows_are_exact_averages_of_their_deltas():
    windows = []
    stats = LatencyStats(on_window=windows.append, on_total=lambda _: None)
    for d in range(1, 10_001):
        stats.add(float(d))
    by = {}
    for w in windows:
        by.setdefault(w["window"], []).append(w)
    assert len(by["100"]) == 100 and len(by["1K"]) == 10 and len(by["10K"]) == 1
    assert by["100"][0]["avg_ms"] == 50.5 and by["100"][-1]["avg_ms"] == 9950.5
    # The seed's `delta1k =+ delta` made these 10x, 100x too small; each must be its own mean.
    assert [w["avg_ms"] for w in by["1K"]] == [500.5 + 1000 * i for i in range(10)]
    assert by["10K"][0]["avg_ms"] == 5000.5
    assert (by["10K"][0]["p50_ms"], by["10K"][0]["p95_ms"], by["10K"][0]["p99_ms"]) == (5000, 9500, 9900)


def test_running_totals_stay_exact_as_deltas_arrive_out_of_order():
    stats = LatencyStats(on_window=lambda _: None, on_total=lambda _: None)
    deltas = [float((i * 7919) % 5003) for i in range(1, 12_001)]  # a permutation-like, unordered stream
    for upto in (1, 999, 5_000, 12_000):
        for d in deltas[stats.count:upto]:
            stats.add(d)
        t, expected = stats.total(), sorted(deltas[:upto])
        assert (t["messages"], t["p50_ms"], t["p99_ms"], t["max_ms"]) == (
            upto, percentile(expected, 0.5), percentile(expected, 0.99), expected[-1])


def test_total_percentiles_hold_the_stated_precision_and_average_and_maximum_stay_exact():
    # Whole milliseconds below 10 s are exact (Kafka timestamps are whole ms); above, 3 significant digits.
    rng = random.Random(7)
    deltas = [float(rng.randint(0, 9_999)) for _ in range(50_000)] + [rng.uniform(10_000, 900_000) for _ in range(5_000)]
    rng.shuffle(deltas)
    stats = LatencyStats(on_window=lambda _: None, on_total=lambda _: None)
    for d in deltas:
        stats.add(d)
    t, exact = stats.total(), sorted(deltas)
    for p, key in ((0.5, "p50_ms"), (0.95, "p95_ms"), (0.99, "p99_ms")):
        want = percentile(exact, p)
        if want < 10_000:
            assert t[key] == want, (key, t[key], want)
        else:
            assert abs(t[key] - want) <= 0.005 * want, (key, t[key], want)
    assert t["max_ms"] == exact[-1] and abs(t["avg_ms"] - sum(deltas) / len(deltas)) < 1e-6
    assert t["messages"] == len(deltas)


def test_windows_stay_exact_long_after_the_kept_deltas_rolled_over():
    windows = []
    stats = LatencyStats(on_window=windows.append, on_total=lambda _: None)
    n = 3 * RECENT + 50_000
    for i in range(1, n + 1):
        stats.add(float(i))
    big = [w for w in windows if w["window"] == "100K"]
    assert len(big) == 3
    # The third 100K window holds deltas 200,001..300,000 exactly (its mean, its nearest-rank p99).
    assert big[2]["avg_ms"] == 250_000.5 and big[2]["p99_ms"] == 299_000.0 and big[2]["max_ms"] == 300_000.0
    assert [w["avg_ms"] for w in windows if w["window"] == "1K"][-1] == n - 499.5
    assert stats.count == n and len(stats.recent) <= 2 * RECENT


def test_memory_stays_flat_however_many_messages():
    import psutil

    stats = LatencyStats(on_window=lambda _: None, on_total=lambda _: None)
    producers = [f"p{k}" for k in range(4)]

    def feed(start: int, stop: int) -> None:
        for i in range(start, stop):
            stats.seen_before((producers[i % 4], i // 4))
            stats.add(float(i % 5_000))

    rss = psutil.Process().memory_info
    feed(0, 2 * RECENT + 1)  # warm-up: the kept deltas at their most
    stats.total()
    warm = rss().rss
    feed(2 * RECENT + 1, 1_000_000)
    stats.total()
    # 800,000 more messages: the former accounting kept ~170 bytes for each (a delta, a sorted copy, an id).
    assert rss().rss - warm < 20 * 2**20, (rss().rss - warm) / 2**20
    assert stats.count == 1_000_000 and stats.duplicates == 0 and stats.id_ranges == 4


def test_duplicates_are_found_in_interleaved_partitions_and_ranges_merge_back():
    # Two producers' sequences spread over 4 partitions, read a partition batch at a time, with a
    # batch redelivered (a consumer restarted before committing) and one message lost.
    stats = LatencyStats(on_window=lambda _: None, on_total=lambda _: None)
    ids = [(f"p{i % 2}", i // 2) for i in range(8_000)]
    lost = ids.pop(5_000)
    partitions = [ids[p::4] for p in range(4)]
    order = []
    for start in range(0, 2_000, 250):
        for p in range(4):
            order.extend(partitions[p][start:start + 250])
    order.extend(partitions[2][500:750])  # redelivered
    fresh = [m for m in order if not stats.seen_before(m)]
    assert stats.duplicates == 250 and len(fresh) == len(ids) == len(set(fresh))
    assert stats.id_ranges == 3  # one range per producer, and the lost message's gap
    assert not stats.seen_before(lost) and stats.id_ranges == 2
    assert stats.seen_before(lost) and stats.duplicates == 251


def test_sequence_ranges_keep_what_was_seen():
    rng = random.Random(3)
    r, seen = SeqRanges(), set()
    for _ in range(20_000):
        seq = rng.randint(0, 5_000)
        assert r.add(seq) == (seq not in seen)
        seen.add(seq)
    assert len(r) == sum(1 for s in seen if s - 1 not in seen)  # one range per run of consecutive numbers


def test_percentile_is_nearest_rank():
    assert percentile([1, 2, 3, 4], 0.5) == 2 and percentile([7], 0.99) == 7 and percentile([], 0.5) == 0.0
    assert percentile([1] * 99 + [9], 0.99) == 1  # exactly 99 % at or below 1: the boundary stays at 1


def test_injected_delay_is_reported_within_1_ms_at_every_percentile(kafka, topics, processor):
    processor("--delay-ms", "300")
    t0 = int(time.time() * 1000)
    # The consumer starts first: its interpreter start-up would otherwise steal CPU from the
    # processor while it emits, and that scheduling jitter is not what this test measures.
    consumer = subprocess.Popen([sys.executable, "-m", "monitors.kafka_latency", "--brokers", kafka.url,
                                 "--session-timeout-ms", "6000", "--topic", topics[1], "--start", f"time:{t0}",
                                 "--messages", "200", "--group", "d1"],
                                cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    assert consumer.stdout.readline().startswith("reading ")
    p = producer(kafka)
    for i in range(200):
        p.produce(topics[0], f'{{"identifier": {i}}}'.encode())
        p.flush(10)
        time.sleep(0.003)  # pacing the input (not synchronisation): keeps the processor from queueing
    out, _ = consumer.communicate(timeout=120)
    t = total(out)
    assert t["messages"] == 200, out[-2000:]
    # The truth, read from the output topic itself: each message's CreateTime minus the input time it
    # carries. The processor held each one at least the delay; how much later a busy machine let it
    # produce is the pipeline's own time, which the report must give exactly, not a figure of ours.
    deltas = sorted(output_deltas(kafka, topics[1], since_ms=t0, count=200))
    assert deltas[0] >= 300, deltas[:5]
    truth = {"avg": sum(deltas) / len(deltas), "p50": percentile(deltas, 0.50), "p95": percentile(deltas, 0.95),
             "p99": percentile(deltas, 0.99)}
    for key, value in truth.items():
        assert abs(t[key] - value) <= 1, (key, t, truth)
    assert t["timestamps"] == "CreateTime 200"  # Tansu gives CreateTime only, and it is reported


def output_deltas(kafka, topic: str, since_ms: int, count: int) -> list[int]:
    """CreateTime − timestamp_start (ms) of the first `count` messages of `topic` from `since_ms` on."""
    from confluent_kafka import Consumer

    c = Consumer({"bootstrap.servers": kafka.url, "group.id": f"truth-{topic}", "auto.offset.reset": "earliest"})
    c.subscribe([topic])
    deltas: list[int] = []
    try:
        def read() -> bool:
            msg = c.poll(0.5)
            if msg is not None and not msg.error():
                start = json.loads(msg.value()).get("timestamp_start")
                if start is not None and start >= since_ms:
                    deltas.append(msg.timestamp()[1] - start)
            return len(deltas) >= count
        wait_for(read, timeout=90, what=f"{count} messages on {topic}")
    finally:
        c.close()
    return deltas


def test_every_produced_message_comes_out_once(kafka, topics, processor, tmp_path):
    # -t 10m with a 180 s timeout: the run must end by itself once --kafka-messages are delivered.
    processor()
    prefix = tmp_path / "run"
    done = run_locust(["-f", str(REPO / "locustfiles" / "kafka.py"), "--headless", "-u", "5", "-r", "5", "-t", "10m",
                       "--kafka-brokers", kafka.url, "--kafka-topic", topics[0], "--kafka-messages", "1000",
                       "--kafka-latency-topic", topics[1], "--csv", str(prefix), "--no-monitor"], timeout=180)
    assert done.returncode == 0, log_of(done.stderr)
    stats = read_locust_stats(prefix)
    assert topics[0] in stats, (list(stats), log_of(done.stderr))
    assert int(stats[topics[0]]["Request Count"]) == 1000 and int(stats[topics[0]]["Failure Count"]) == 0
    assert int(stats[topics[1]]["Request Count"]) == 1000  # E2E: produced = consumed
    assert int(stats["Aggregated"]["Request Count"]) == 1000  # the PRODUCE requests only: E2E is outside
    assert "0 duplicates" in done.stderr


def test_produced_once_per_message_across_two_processes(kafka, topics, tmp_path):
    prefix = tmp_path / "run"
    done = run_locust(["-f", str(REPO / "locustfiles" / "kafka.py"), "--headless", "-u", "4", "-r", "4", "-t", "10m",
                       "--processes", "2", "--kafka-brokers", kafka.url, "--kafka-topic", topics[0],
                       "--kafka-messages", "501", "--csv", str(prefix), "--no-monitor"], timeout=120)
    assert done.returncode == 0, log_of(done.stderr)
    assert int(read_locust_stats(prefix)[topics[0]]["Request Count"]) == 501


def test_duplicates_are_counted_not_measured(kafka, topics):
    now = int(time.time() * 1000)
    events = [{"_producer": "p1", "_seq": i, "timestamp_start": now} for i in range(10)]
    produce_output(kafka, topics[1], events + events[:3])
    t = total(latency_cli(kafka, "--topic", topics[1], "--start", f"time:{now - 1000}", "--messages", "13").stdout)
    assert (t["messages"], t["duplicates"]) == (10, 3)


def test_timestamp_start_in_seconds_is_detected_not_mixed(kafka, topics):
    now = time.time()
    produce_output(kafka, topics[1], [{"timestamp_start": now}] * 5 + [{"timestamp_start": int(now * 1000)}] * 5)
    done = latency_cli(kafka, "--topic", topics[1], "--start", f"time:{int(now * 1000) - 1000}", "--messages", "10")
    t = total(done.stdout)
    assert (t["messages"], t["in_seconds"]) == (5, 5)
    assert t["avg"] < 60_000  # seconds were not mixed in as milliseconds
    assert "is in seconds, not milliseconds" in done.stderr


def test_unreadable_messages_are_counted_invalid_not_raised(kafka, topics):
    now = int(time.time() * 1000)
    p = producer(kafka)
    for value in (None, b"", b"\xff\xfe not utf-8", b"[1, 2]", b'{"no_start": 1}', b'{"timestamp_start": 1} trailing',
                  json.dumps({"timestamp_start": now}).encode()):
        p.produce(topics[1], value)
    p.flush(30)
    done = latency_cli(kafka, "--topic", topics[1], "--start", f"time:{now - 1000}", "--messages", "7")
    assert done.returncode == 0, log_of(done.stderr)
    t = total(done.stdout)
    assert (t["messages"], t["invalid"]) == (1, 6)


def test_negative_deltas_are_errors(kafka, topics):
    future = int(time.time() * 1000) + 3_600_000
    produce_output(kafka, topics[1], [{"timestamp_start": future}] * 4)
    t = total(latency_cli(kafka, "--topic", topics[1], "--start", "beginning", "--messages", "4").stdout)
    assert (t["messages"], t["negative"]) == (0, 4)


def test_restarted_consumer_does_not_recount_old_messages(kafka, topics):
    t0 = int(time.time() * 1000)
    produce_output(kafka, topics[1], [{"timestamp_start": t0} for _ in range(50)])
    first = total(latency_cli(kafka, "--topic", topics[1], "--group", "restart", "--start", f"time:{t0 - 1000}",
                              "--messages", "50").stdout)
    produce_output(kafka, topics[1], [{"timestamp_start": int(time.time() * 1000)} for _ in range(30)])
    second = total(latency_cli(kafka, "--topic", topics[1], "--group", "restart", "--start", "committed",
                               "--idle-timeout", "8").stdout)
    assert (first["messages"], second["messages"]) == (50, 30)


def test_bad_start_is_a_one_line_error(kafka):
    done = latency_cli(kafka, "--topic", "x", "--start", "yesterday")
    assert done.returncode == 2
    assert done.stderr.strip() == "error: --start 'yesterday': expected end, committed, beginning or time:<epoch ms>"
    assert check_start("time:123") == "time:123"


def run_kafka_locust(*args: str, env: dict | None = None):
    return run_locust(["-f", str(REPO / "locustfiles" / "kafka.py"), "--headless", "-u", "1", "-r", "1", "-t", "30s",
                       "--no-monitor", *args], env=env, timeout=120)


def test_bad_broker_address_is_a_one_line_error():
    done = run_kafka_locust("--kafka-brokers", "127.0.0.1:1", "--kafka-connect-timeout", "2")
    assert done.returncode != 0
    lines = [x for x in (done.stdout + done.stderr).splitlines() if x.startswith("error:")]
    assert len(lines) == 1 and lines[0].startswith("error: Kafka brokers '127.0.0.1:1' unreachable"), lines
    assert "Traceback" not in done.stderr


def test_credentials_the_broker_refuses_are_a_one_line_error(kafka):
    # Tansu here speaks plaintext without SASL: a SASL client is refused at the handshake.
    done = run_kafka_locust("--kafka-brokers", kafka.url, "--kafka-connect-timeout", "3",
                            env={"KAFKA_APIKEY": "token:wrong", "KAFKA_SSL": "0"})
    lines = [x for x in (done.stdout + done.stderr).splitlines() if x.startswith("error:")]
    assert done.returncode != 0 and len(lines) == 1 and "unreachable or refusing us" in lines[0], lines


def test_malformed_credentials_are_a_one_line_error(kafka):
    done = run_kafka_locust("--kafka-brokers", kafka.url, env={"KAFKA_APIKEY": "no-colon"})
    assert done.returncode != 0 and "error: KAFKA_APIKEY is not user:password" in done.stderr


def test_unreadable_data_file_is_a_one_line_error(kafka, tmp_path):
    done = run_kafka_locust("--kafka-brokers", kafka.url, "--kafka-data-file", str(tmp_path / "nope.json"))
    assert done.returncode != 0
    assert f"error: --kafka-data-file '{tmp_path / 'nope.json'}' cannot be read: No such file or directory" in done.stderr
    bad = tmp_path / "bad.json"
    bad.write_text('{"not": "an array"}')
    done = run_kafka_locust("--kafka-brokers", kafka.url, "--kafka-data-file", str(bad))
    assert f"error: --kafka-data-file '{bad}': expected a non-empty JSON array of objects" in done.stderr


def test_kafka_rate_produces_each_planned_message_once_or_drops_it(kafka, topics, tmp_path):
    # Open model: 300 planned messages at 150/s; the run ends by itself when the plan is spent.
    prefix = tmp_path / "run"
    done = run_locust(["-f", str(REPO / "locustfiles" / "kafka.py"), "--headless", "-u", "20", "-r", "20", "-t", "10m",
                       "--kafka-brokers", kafka.url, "--kafka-topic", topics[0], "--kafka-messages", "300",
                       "--kafka-rate", "150", "--csv", str(prefix), "--no-monitor"], timeout=180)
    assert done.returncode == 0, log_of(done.stderr)
    m = re.search(r"open model: planned (\d+), started (\d+), dropped (\d+) over 2.0 s", done.stderr)
    assert m, log_of(done.stderr)
    planned, started, dropped = map(int, m.groups())
    assert planned == 300 and started + dropped == 300
    stats = read_locust_stats(prefix)
    assert int(stats[topics[0]]["Request Count"]) == started  # PRODUCE rows; a DROPPED row has the rest
    assert int(stats.get("Aggregated")["Request Count"]) == started


def test_the_default_data_file_is_found_outside_the_checkout(kafka, topics, tmp_path):
    # Started from another folder, as a user's CI job would: the suite's own records are the default.
    done = run_locust(["-f", str(REPO / "locustfiles" / "kafka.py"), "--headless", "-u", "2", "-r", "2", "-t", "60s",
                       "--kafka-brokers", kafka.url, "--kafka-topic", topics[0], "--kafka-messages", "20",
                       "--no-monitor"], cwd=tmp_path, timeout=120)
    assert done.returncode == 0, log_of(done.stderr)
    assert "kafka-data-file" not in done.stderr and "kafka: 20 messages sent, 20 delivered" in done.stderr


def test_arrival_windows_merge_processes_into_the_exact_percentiles_of_a_span():
    from monitors.kafka_latency import ArrivalWindows
    from plumbing import histogram
    from plumbing.percentile import percentile

    a, b, master = ArrivalWindows(), ArrivalWindows(), ArrivalWindows()
    a.add_many([1040.0] * 90 + [1500.0] * 5, now=100.2)
    b.add_many([1041.0] * 4 + [3000.0], now=101.7)
    b.add_many([9999.0] * 50, now=103.1)  # read after the span
    master.merge(a.take())
    master.merge({str(s): {str(ms): n for ms, n in h.items()} for s, h in b.take().items()})  # as msgpack may hand it
    assert a.take() == {} and b.take() == {}  # each report carries only what is new
    span = master.histogram(100.0, 103.0)
    everything = sorted([1040.0] * 90 + [1500.0] * 5 + [1041.0] * 4 + [3000.0])
    assert sum(span.values()) == 100
    assert histogram.nearest_rank(span, 0.94) == percentile(everything, 0.94) == 1041
    assert histogram.nearest_rank(span, 0.95) == percentile(everything, 0.95) == 1500
