"""Tracking events end to end through the reference pipeline, on real Redis, Tansu, ClickHouse, Celery."""

from __future__ import annotations

import json
import threading
import time

import pytest

from monitors.xapi_e2e import EndToEnd
from plumbing import chclient
from tests.helpers import log_of, run_locust, wait_for
from tests.pipeline.conftest import LOCUSTFILE, generate, stored, summary_line


@pytest.mark.parametrize("backend", ["celery", "redis_bus", "kafka_bus", "vector"])
def test_n_events_in_give_exactly_n_statements_out(backend, pipeline, clickhouse, redis_server, request, tmp_path):
    kafka = request.getfixturevalue("kafka") if backend == "kafka_bus" else None
    p = pipeline(backend, "--batch-size", "50", "--batch-interval", "1")  # kafka_bus: it creates its topic
    done, end = generate(p, clickhouse, redis_server, kafka, "--num-events", "400", "--events-per-second", "400",
                         "--event-mix", "realistic", results=tmp_path)
    assert done.returncode == 0, log_of(done.stderr)
    e2e = end["e2e"]
    n = 400 - end["open_model"]["dropped"]  # open model: an event no user was free for is dropped, not sent
    assert (e2e["sent"], e2e["stored"], e2e["missing"], e2e["duplicates"]) == (n, n, 0, 0), e2e
    rows, distinct = stored(clickhouse, p.db)
    assert distinct == n
    assert 0 < e2e["p50_ms"] <= e2e["p95_ms"] <= e2e["p99_ms"] and e2e["resolution_ms"] == 500  # --e2e-poll-interval 0.5 (the default)
    assert end["drained"] is True
    assert f"sent {n}, stored {n}, missing 0, duplicates 0" in summary_line(done.stderr)


def test_e2e_latency_has_its_own_row_and_check_outside_aggregated(pipeline, clickhouse, redis_server, tmp_path):
    p = pipeline("redis_bus", "--batch-size", "20", "--batch-interval", "0.5")
    # A batch interval of 0.5 s puts every end-to-end latency far above 1 ms: the E2E check fails.
    done, end = generate(p, clickhouse, redis_server, None, "--num-events", "100", "--events-per-second", "200",
                         "--clickhouse-data-path", str(tmp_path), "--check-e2e-p95", "1", results=tmp_path)
    assert done.returncode == 9, log_of(done.stderr)
    assert "check failed: end-to-end p95" in done.stderr
    runway = end["e2e"]["runway"]
    assert runway["bytes_per_event"] > 0 and runway["free_disk_bytes"] > 0 and runway["hours_until_disk_full"] > 0
    assert "fill the" in summary_line(done.stderr)
    # Locust's final figures (stats.json) hold one E2E latency per event,
    # in its own row: Aggregated counts the events sent, once each.
    rows = {(r["type"], r["name"]): r for r in json.loads((tmp_path / "stats.json").read_text())["requests"]}
    n = 100 - end["open_model"]["dropped"]
    assert rows[("E2E", "tracking event → xAPI in ClickHouse")]["requests"] == n
    assert sum(r["requests"] for (t, _n), r in rows.items() if t == "EVENT") == n
    assert rows[("", "Aggregated")]["requests"] == n
    # So do the monitor's interval rows in ClickHouse, which the report's timeline and load.png read.
    client = chclient.connect(clickhouse.url)
    per_type = dict(client.execute(
        "SELECT request_type, sum(requests) FROM event_sink.load_test_request_stats WHERE run_id = %(r)s "
        "AND timing = 'service' AND (request_type = 'E2E' OR name = 'Aggregated') GROUP BY request_type",
        {"r": end["run_id"]}))
    client.disconnect()
    assert per_type == {"": n, "E2E": n}, per_type


def test_the_monitor_sees_the_batch_list_rise_and_drain(pipeline, clickhouse, redis_server, tmp_path):
    # Batches of 1000 never fill with 300 events: only the batch timer can flush them.
    p = pipeline("celery", "--batch-size", "1000", "--batch-interval", "4")
    done, end = generate(p, clickhouse, redis_server, None, "--num-events", "300", "--events-per-second", "300",
                         results=tmp_path)
    assert done.returncode == 0, log_of(done.stderr)
    samples = [json.loads(line) for line in (tmp_path / "samples.jsonl").read_text().splitlines()]
    batch = [s["stats"]["celery"]["batch_queue_length"] for s in samples if "celery" in s["stats"]]
    assert max(batch) > 0 and batch[-1] == 0, batch
    assert end["drained"] is True and end["e2e"]["stored"] == 300 - end["open_model"]["dropped"]


def test_a_stopped_consumer_shows_growing_lag_and_drains_after_restart(pipeline, clickhouse, redis_server, tmp_path):
    p = pipeline("redis_bus", "--batch-size", "50", "--batch-interval", "1")
    p.stop()  # the consumer group exists; nobody reads
    result: dict = {}

    def run() -> None:
        # Closed model, no pauses: every one of the 300 events is sent (the lag must reach 300).
        result["done"], result["end"] = generate(p, clickhouse, redis_server, None, "--num-events", "300",
                                                 "--sleep-time", "0", results=tmp_path)

    t = threading.Thread(target=run)
    t.start()

    def lags() -> list[int]:
        path = tmp_path / "samples.jsonl"
        if not path.exists():
            return []
        return [json.loads(line)["stats"].get("redis_bus", {}).get("lag") or 0 for line in path.read_text().splitlines()]

    def state() -> str:
        path = tmp_path / "samples.jsonl"
        last = path.read_text().splitlines()[-3:] if path.exists() else []
        done = result.get("done")
        return "\n".join([*last, f"generator: {'running' if done is None else log_of(done.stderr)}"])

    wait_for(lambda: max(lags(), default=0) >= 300, timeout=120, interval=0.5, what="the stream's lag reaching 300",
             on_timeout=state)
    pipeline("redis_bus", p=p)  # restart: its pending and new entries are read
    t.join(timeout=180)
    done, end = result["done"], result["end"]
    assert done.returncode == 0, log_of(done.stderr)
    assert end["drained"] is True and end["e2e"]["stored"] == 300 and end["e2e"]["missing"] == 0
    assert lags()[-1] == 0


def test_two_processes_count_each_event_once(pipeline, clickhouse, redis_server, tmp_path):
    p = pipeline("redis_bus", "--batch-size", "100", "--batch-interval", "1", "--workers", "2")
    done, end = generate(p, clickhouse, redis_server, None, "--num-events", "501", "--events-per-second", "500",
                         processes=2)
    assert done.returncode == 0, log_of(done.stderr)
    n = 501 - end["open_model"]["dropped"]
    assert end["open_model"]["planned"] == 501 and end["open_model"]["processes"] == 2
    assert (end["e2e"]["sent"], end["e2e"]["stored"], end["e2e"]["duplicates"]) == (n, n, 0)
    assert stored(clickhouse, p.db)[1] == n


def _xapi_table(clickhouse, db: str):
    """A fresh xAPI table (the reference pipeline's DDL) in `db`: its client, and insert(stamps) storing
    one statement per event timestamp."""
    import uuid

    from targets.pipeline.router import ddl_statements, emission_time

    client = chclient.connect(clickhouse.url)
    client.execute(f"CREATE DATABASE IF NOT EXISTS {db}")
    client.execute(f"DROP TABLE IF EXISTS {db}.xapi_events_all")
    for sql in ddl_statements(db):
        client.execute(sql)

    def insert(stamps: list[str]) -> None:
        client.execute(f"INSERT INTO {db}.xapi_events_all (event_id, emission_time, event) VALUES",
                       [(uuid.uuid4(), emission_time(ts), json.dumps({"timestamp": ts}, separators=(",", ":")))
                        for ts in stamps])

    return client, insert


def _stamps(seconds_ago: float, n: int, first: int = 0) -> list[str]:
    second = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(time.time() - seconds_ago))
    return [f"{second}.{first + i:06d}+00:00" for i in range(n)]


def test_duplicates_are_counted(clickhouse):
    _client, insert = _xapi_table(clickhouse, "xapi_dups")
    stamps = _stamps(2, 5)
    insert(stamps + stamps[:2])  # the same statements delivered twice
    e2e = EndToEnd(clickhouse.url, "xapi_dups", "xapi_events_all", time.time() - 10, lambda: 6)
    assert e2e.poll() == 5
    s = e2e.summary()
    assert (s["sent"], s["stored"], s["missing"], s["duplicates"]) == (6, 5, 1, 2)


def test_events_first_seen_after_the_load_stopped_are_told_apart(clickhouse):
    _client, insert = _xapi_table(clickhouse, "xapi_after")
    e2e = EndToEnd(clickhouse.url, "xapi_after", "xapi_events_all", time.time() - 30, lambda: 7)
    insert(_stamps(1, 5))
    assert e2e.poll() == 5
    assert "after_load" not in e2e.summary()  # the load still runs
    e2e.load_stopped = time.time()
    insert(_stamps(6, 2, first=100))  # the last events, stored late (as a partial batch flushed by a timer)
    wait_for(lambda: e2e.poll() >= 0 and e2e.stored == 7, timeout=30, what="the 2 late events")
    s = e2e.summary()
    assert s["after_load"]["events"] == 2 and s["while_loading"]["events"] == 5
    assert s["after_load"]["p50_ms"] > 5000 > s["while_loading"]["p99_ms"]


def test_a_folded_seconds_late_event_and_duplicate_are_each_counted_once(clickhouse):
    """Seconds whose count stopped changing keep counts, not timestamps (memory bounded by the rate,
    not the run's length): what arrives for them later is still counted exactly."""
    _client, insert = _xapi_table(clickhouse, "xapi_fold")
    stamps = _stamps(3, 6)
    e2e = EndToEnd(clickhouse.url, "xapi_fold", "xapi_events_all", time.time() - 30, lambda: 7, close_after=0)
    insert(stamps[:5])
    assert e2e.poll() == 5  # and the second is folded at once (close_after 0)
    insert([stamps[5], stamps[0]])  # one event stored late, and a second row of an event already counted
    assert e2e.poll() == 1
    assert e2e.poll() == 0  # nothing changed: nothing counted again
    s = e2e.summary()
    assert (s["stored"], s["duplicates"], s["missing"]) == (6, 1, 1)
    assert s["max_ms"] >= 2000  # the late event's latency, from its second's mean event time


def test_e2e_queries_run_on_current_clickhouse(chdb_session):
    from targets.pipeline.router import ddl_statements
    from tests.monitor.conftest import chdb_render

    for sql in ddl_statements("xapi_chdb"):
        chdb_session.query(sql)
    e2e = EndToEnd("clickhouse://default@127.0.0.1:9/default", "xapi_chdb", "xapi_events_all", time.time(),
                   lambda: 0, course_id="course-v1:OEX+abc+2024-1")
    for sql, params in e2e.queries().values():
        chdb_session.query(chdb_render(sql, params))


@pytest.mark.parametrize("args, message", [
    (["--pipeline-backend", "nope"], "argument --pipeline-backend: invalid choice: 'nope' (choose from 'celery', "
                                     "'redis_bus', 'kafka_bus', 'vector', 'ralph')"),
    (["--event-mix", "x"], "argument --event-mix: invalid choice: 'x' (choose from 'enrollment', 'realistic')"),
    (["--course-id", "DemoX"], "argument --course-id: 'DemoX': expected course-v1:ORG+COURSE+RUN"),
    (["--users-file", "/nonexistent.csv"], "--users-file '/nonexistent.csv': No such file or directory"),
    (["--num-events", "0"], "argument --num-events: '0': expected an integer >= 1"),
])
def test_bad_options_are_one_line_errors(args, message):
    done = run_locust(["-f", LOCUSTFILE, "--headless", "-t", "1s", "--no-monitor", *args], timeout=60)
    assert done.returncode != 0
    assert f"error: {message}" in done.stderr and "Traceback" not in done.stderr


def test_an_unreachable_broker_is_a_one_line_error():
    done = run_locust(["-f", LOCUSTFILE, "--headless", "-t", "3s", "--no-monitor", "--no-e2e",
                       "--pipeline-backend", "redis_bus", "--event-bus-redis-url", "redis://127.0.0.1:9/0"], timeout=60)
    assert done.returncode != 0
    assert "error: redis_bus: Redis redis://127.0.0.1:9/0 unreachable" in done.stderr
    assert "Traceback" not in done.stderr


def stream_ms(redis_server, stream: str) -> list[int]:
    """Arrival times (ms) of the stream's entries: Redis stamps each id with its own clock."""
    import redis

    r = redis.Redis.from_url(redis_server.url)
    ids = [i.decode() for i, _f in r.xrange(stream)]
    r.close()
    return sorted(int(i.split("-")[0]) for i in ids)


def test_open_model_sends_each_planned_event_or_counts_it_dropped(pipeline, clickhouse, redis_server, tmp_path):
    p = pipeline("redis_bus", "--batch-size", "100", "--batch-interval", "1")
    done, end = generate(p, clickhouse, redis_server, None, "--num-events", "600", "--events-per-second", "200",
                         results=tmp_path)
    assert done.returncode == 0, log_of(done.stderr)
    om = end["open_model"]
    # The plan's own numbers: 600 instants 5 ms apart are a 3 s window at 200/s, whatever the machine.
    assert (om["planned"], om["started"] + om["dropped"]) == (600, 600)
    assert (om["duration_s"], om["target_rate"]) == (3.0, 200.0)
    received = stream_ms(redis_server, f"{p.prefix}-analytics")
    assert len(received) == om["started"] == end["e2e"]["sent"]
    rows = {(r["type"], r["name"]): r for r in json.loads((tmp_path / "stats.json").read_text())["requests"]}
    assert rows.get(("DROPPED", "tracking events"), {"requests": 0})["requests"] == om["dropped"]


def test_open_model_never_runs_ahead_of_its_plan(pipeline, clickhouse, redis_server):
    # The k-th event to reach Redis cannot arrive before the k-th planned instant: no catching up in
    # bursts, no early start before spawning is complete (Redis and the generator share the clock).
    p = pipeline("redis_bus", "--batch-size", "100", "--batch-interval", "1")
    done, end = generate(p, clickhouse, redis_server, None, "--num-events", "400", "--events-per-second", "200")
    assert done.returncode == 0, log_of(done.stderr)
    om = end["open_model"]
    received = stream_ms(redis_server, f"{p.prefix}-analytics")
    start_ms = om["start_wall"] * 1000
    assert len(received) == om["started"] > 0
    assert all(ms >= start_ms + k * 5 - 1 for k, ms in enumerate(received))  # ids have 1 ms resolution


def test_an_unreachable_rate_drops_events_and_names_the_generator_as_the_limit(pipeline, clickhouse, redis_server):
    # More events than the sender queues (2,000): the rest of the plan falls due while it is full.
    p = pipeline("redis_bus", "--batch-size", "1000", "--batch-interval", "1")
    done, end = generate(p, clickhouse, redis_server, None, "--num-events", "5000", "--events-per-second", "10000000",
                         users=1)
    assert done.returncode == 0, log_of(done.stderr)
    om = end["open_model"]
    assert om["planned"] == 5000 and om["started"] + om["dropped"] == 5000 and om["dropped"] > 0
    assert len(stream_ms(redis_server, f"{p.prefix}-analytics")) == om["started"]
    assert f"dropped {om['dropped']:,}" in done.stderr and "the generator is the limit" in done.stderr


def test_check_min_rate_fails_the_run_when_events_are_dropped(pipeline, clickhouse, redis_server):
    p = pipeline("redis_bus", "--batch-size", "1000", "--batch-interval", "1")
    done, end = generate(p, clickhouse, redis_server, None, "--num-events", "5000", "--events-per-second", "10000000",
                         "--check-min-rate", "0.01", users=1)  # more than the sender queues, as above
    assert done.returncode == 8, log_of(done.stderr)
    assert "check failed: achieved" in done.stderr and end["exit_code"] == 8
