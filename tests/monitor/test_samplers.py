"""Each sampler against ground truth the test builds on a real server."""

from __future__ import annotations

import json
import logging
import shutil
import subprocess
import sys
import threading
import time
import uuid
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from backends import celery, kafka_bus, redis_bus, vector
from monitors import clickhouse as ch_sampler
from monitors import host
from monitors import samplers as sampling
from monitors.figures import flatten
from monitors.loop import Sampling, drain_outcome, store_sample
from tests.helpers import REPO, log_of, wait_for

FIXTURES = Path(__file__).with_name("fixtures")


# -- celery -------------------------------------------------------------------------------------
def test_celery_counts_every_queue_and_the_erb_lists(redis_server, rds):
    rds.lpush("edx.lms.core.default", *range(7))
    rds.lpush("edx.cms.core.low", *range(2))
    rds.lpush("events_router_queue_xapi", *range(99))
    rds.lpush("dead_queue_xapi", "x")
    s = celery.Sampler(redis_server.url).sample()
    assert (s["lms_queue_length"], s["cms_queue_length"], s["batch_queue_length"], s["dead_queue_length"]) == (7, 2, 99, 1)
    assert s["lag"] == 109  # "drained" includes ERB's batch buffer and its dead letters


def test_celery_counts_the_queue_the_runs_tasks_go_to_even_when_not_listed(redis_server, rds):
    from types import SimpleNamespace

    rds.delete("custom.tasks")
    rds.lpush("custom.tasks", *range(4))
    opts = SimpleNamespace(celery_broker_url=redis_server.url, celery_queues="edx.lms.core.default",
                           celery_queue="custom.tasks", erb_redis_url=None, erb_lists="")
    try:
        assert celery.sampler(opts).sample()["lag"] == 4  # not 0: "drained" while the tasks wait
    finally:
        rds.delete("custom.tasks")


def test_celery_backlog_drains_when_a_real_worker_consumes(redis_server, rds, tmp_path):
    import subprocess
    import sys

    app = tmp_path / "drain_app.py"
    app.write_text(
        "from celery import Celery\n"
        f"app = Celery('drain', broker='{redis_server.url}')\n"
        "@app.task(name='noop')\ndef noop(i):\n    return i\n"
    )
    sys.path.insert(0, str(tmp_path))
    try:
        import drain_app

        for i in range(25):
            drain_app.noop.apply_async((i,), queue="edx.lms.core.default")
    finally:
        sys.path.remove(str(tmp_path))
    sampler = celery.Sampler(redis_server.url)
    assert sampler.sample()["lag"] == 25
    worker = subprocess.Popen([sys.executable, "-m", "celery", "-A", "drain_app", "worker", "-Q",
                               "edx.lms.core.default", "--pool", "solo", "--without-heartbeat", "--without-gossip",
                               "--without-mingle", "-l", "WARNING"], cwd=tmp_path, stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL)
    try:
        wait_for(lambda: sampler.sample()["lag"] == 0, timeout=60, what="the worker to drain the queue")
    finally:
        worker.terminate()
        worker.wait(timeout=30)


# -- redis_bus ----------------------------------------------------------------------------------
def _read_and_ack(rds, stream: str, group: str, n: int, ack: int) -> None:
    got = rds.xreadgroup(group, "consumer-1", {stream: ">"}, count=n)
    ids = [mid for _, msgs in got for mid, _ in msgs]
    assert len(ids) == n
    if ack:
        rds.xack(stream, group, *ids[:ack])


def test_redis_bus_lag_is_entries_not_yet_delivered(redis_server, rds):
    for i in range(50):
        rds.xadd("dev-analytics", {"i": i})
    rds.xgroup_create("dev-analytics", "event_routing_backends", id="0")
    _read_and_ack(rds, "dev-analytics", "event_routing_backends", 20, ack=15)
    s = redis_bus.Sampler(redis_server.url, "dev-analytics").sample()
    g = s["groups"][0]
    assert (s["total_events"], g["lag"], g["pending"], g["lag_source"]) == (50, 30, 5, "redis")
    assert g["consumers"] == [{"name": "consumer-1", "pending": 5}]
    assert redis_bus.Sampler(redis_server.url, "dev-analytics").backlog(s) == 35


def test_redis_bus_counts_lag_itself_when_redis_reports_nil(redis_server, rds):
    ids = [rds.xadd("dev-analytics", {"i": i}) for i in range(40)]
    rds.xgroup_create("dev-analytics", "g", id="0")
    _read_and_ack(rds, "dev-analytics", "g", 10, ack=10)
    rds.xdel("dev-analytics", ids[20])  # a deletion past the group's position: Redis cannot compute lag
    raw = rds.xinfo_stream("dev-analytics", full=True)["groups"][0]
    assert raw.get("lag") is None
    g = redis_bus.Sampler(redis_server.url, "dev-analytics").sample()["groups"][0]
    assert (g["lag"], g["lag_source"]) == (29, "xrange")


def _trimmed_stream(rds) -> None:
    """A group that read 10 of 50 entries, then 1,000 more added with MAXLEN 100: 940 trimmed unread."""
    for i in range(50):
        rds.xadd("dev-analytics", {"i": i})
    rds.xgroup_create("dev-analytics", "g", id="0")
    _read_and_ack(rds, "dev-analytics", "g", 10, ack=10)
    for i in range(1000):
        rds.xadd("dev-analytics", {"i": i}, maxlen=100, approximate=False)


def test_redis_bus_entries_trimmed_before_the_group_read_them_are_lost_not_lag(redis_server, rds, caplog):
    _trimmed_stream(rds)
    sampler = redis_bus.Sampler(redis_server.url, "dev-analytics")
    behind = sampler.sample()
    assert (behind["lag"], behind["lost_unread"]) == (100, 940)  # the whole stream is unread
    _read_and_ack(rds, "dev-analytics", "g", 100, ack=100)
    assert rds.xinfo_stream("dev-analytics", full=True)["groups"][0]["lag"] == 940  # Redis' own figure
    caught_up = sampler.sample()
    assert (caught_up["lag"], caught_up["pending"], caught_up["lost_unread"]) == (0, 0, 940)
    assert sampler.backlog(caught_up) == 0  # drained: nothing left that a consumer could still read


def test_redis_bus_lag_after_a_trim_counts_only_what_is_still_in_the_stream(redis_server, rds):
    _trimmed_stream(rds)
    _read_and_ack(rds, "dev-analytics", "g", 100, ack=100)
    for i in range(30):
        rds.xadd("dev-analytics", {"i": i}, maxlen=100, approximate=False)
    fresh = redis_bus.Sampler(redis_server.url, "dev-analytics").sample()  # first look: counts once
    assert (fresh["lag"], fresh["lost_unread"]) == (30, 940)


def test_the_drain_does_not_wait_for_events_the_bus_trimmed_unread(redis_server, rds):
    for i in range(50):
        rds.xadd("dev-analytics", {"i": i})
    rds.xgroup_create("dev-analytics", "g", id="0")
    _read_and_ack(rds, "dev-analytics", "g", 10, ack=10)  # 10 sent and stored before the run's first sample
    e2e = _SentMinusStored(40)
    sampling = Sampling({"redis_bus": redis_bus.Sampler(redis_server.url, "dev-analytics"), "e2e": e2e})
    sampling.take()
    for i in range(1000):
        rds.xadd("dev-analytics", {"i": i}, maxlen=100, approximate=False)
    _read_and_ack(rds, "dev-analytics", "g", 100, ack=100)  # the consumer stores all it still can
    e2e.value = 1040 - 100  # 940 will never arrive: trimmed before the group read them
    _, stats, backlog = sampling.take()
    assert (stats["redis_bus"]["lost_unread"], backlog) == (940, 0)
    assert drain_outcome(sampling, waited=1.0, timeout=600) == (
        True, "drained 1.0 s after the test stopped; 940 events were lost before the pipeline read them "
              "(not waited for)")
    sampling.close()


def test_events_trimmed_before_the_run_began_are_not_taken_off_its_backlog(redis_server, rds):
    _trimmed_stream(rds)  # 940 lost before this run's first sample
    _read_and_ack(rds, "dev-analytics", "g", 100, ack=100)
    sampling = Sampling({"redis_bus": redis_bus.Sampler(redis_server.url, "dev-analytics"), "e2e": _SentMinusStored(5)})
    _, stats, backlog = sampling.take()
    assert (stats["redis_bus"]["lost_unread"], backlog) == (940, 5)  # the run's own 5 are still waited for
    assert drain_outcome(sampling, waited=1.0, timeout=600) is None
    sampling.close()


def test_redis_bus_trimming_is_said_once_not_every_sample(redis_server, rds, caplog):
    for i in range(50):
        rds.xadd("dev-analytics", {"i": i})
    rds.xgroup_create("dev-analytics", "g", id="0")
    _read_and_ack(rds, "dev-analytics", "g", 10, ack=10)  # a group that reads (one that never did has no count)
    sampler = redis_bus.Sampler(redis_server.url, "dev-analytics")
    sampler.sample()
    for i in range(500):
        rds.xadd("dev-analytics", {"i": i}, maxlen=100, approximate=False)
    with caplog.at_level("WARNING", logger="backends.redis_bus"):
        sampler.sample()
        rds.xadd("dev-analytics", {"i": 0}, maxlen=100, approximate=False)
        sampler.sample()
    said = [r.getMessage() for r in caplog.records if "trimmed" in r.getMessage()]
    assert len(said) == 1 and "440 events trimmed before group g read them" in said[0]


def test_redis_bus_stream_name_follows_the_prefix(redis_server, rds):
    from types import SimpleNamespace

    opts = SimpleNamespace(event_bus_redis_url=redis_server.url, event_bus_prefix="prod", event_bus_stream=None,
                           redis_bus_count_limit=10)
    assert redis_bus.sampler(opts).stream == "prod-analytics"
    assert redis_bus.sampler(opts).sample() == {"stream": "prod-analytics", "total_events": 0, "lag": 0,
                                                     "pending": 0, "groups": [], "exists": False}


NO_GROUP = "no consumer group reads stream bare-analytics"


def test_redis_bus_lag_of_a_stream_no_group_reads_is_unknown_not_zero(redis_server, rds):
    rds.delete("bare-analytics")
    for i in range(5):
        rds.xadd("bare-analytics", {"i": i})
    sampler = redis_bus.Sampler(redis_server.url, "bare-analytics")
    s = sampler.sample()
    assert (s["total_events"], s["lag"], s["pending"], s["lag_unknown"]) == (5, None, None, NO_GROUP)
    assert sampler.backlog(s) is None
    assert "lag" not in dict(flatten(s))  # stored as missing, never as 0


def test_an_unknown_lag_is_said_once_and_missing_from_the_stored_backlog(redis_server, rds, tmp_path, caplog):
    rds.delete("bare-analytics")
    rds.xadd("bare-analytics", {"i": 0})
    sampling = Sampling({"redis_bus": redis_bus.Sampler(redis_server.url, "bare-analytics")})
    with caplog.at_level(logging.WARNING, logger="monitors"):
        for _ in range(3):
            now, stats, backlog = sampling.take()
            store_sample(None, "r", now, stats, backlog, tmp_path)
    said = [r.getMessage() for r in caplog.records if "lag unknown" in r.getMessage()]
    assert len(said) == 1 and said[0].startswith(f"monitor: {NO_GROUP}: lag unknown — is the pipeline consuming?")
    rows = [json.loads(line) for line in (tmp_path / "samples.jsonl").read_text().splitlines()]
    assert [(r["backlog"], r["stats"]["redis_bus"]["lag"]) for r in rows] == [(None, None)] * 3
    sampling.close()


def test_the_drain_neither_waits_on_an_unknown_lag_nor_calls_it_drained(redis_server, rds):
    rds.delete("bare-analytics")
    rds.xadd("bare-analytics", {"i": 0})
    bare = redis_bus.Sampler(redis_server.url, "bare-analytics")
    alone = Sampling({"redis_bus": bare})
    alone.take()
    drained, text = drain_outcome(alone, waited=0.0, timeout=600)  # at once, not after the timeout
    assert drained is None and text == f"drain unknown ({NO_GROUP}; not waited on)"
    beside = Sampling({"redis_bus": bare, "queue": _Fixed(3)})
    beside.take()
    assert drain_outcome(beside, waited=0.0, timeout=600) is None  # the known backlog is still waited on
    beside.samplers["queue"] = _Fixed(0)
    beside.take()
    assert drain_outcome(beside, waited=1.0, timeout=600)[0] is None
    bare.close()


# -- kafka_bus ----------------------------------------------------------------------------------
def test_kafka_bus_lag_per_partition_of_the_group(kafka):
    from confluent_kafka import Consumer, Producer

    topic = f"lag-{uuid.uuid4().hex[:8]}"
    # One message per produce batch: the only way Tansu's high watermark is exact (see DEVELOPERS.md).
    producer = Producer({"bootstrap.servers": kafka.url, "linger.ms": 0})
    for i in range(12):
        producer.produce(topic, value=str(i).encode(), partition=0)
        producer.flush(10)
    consumer = Consumer({"bootstrap.servers": kafka.url, "group.id": "event_routing_backends",
                         "auto.offset.reset": "earliest", "enable.auto.commit": False, "session.timeout.ms": 6000})
    consumer.subscribe([topic])
    got = []
    deadline = time.monotonic() + 60
    while len(got) < 5 and time.monotonic() < deadline:
        msg = consumer.poll(1.0)
        if msg is not None and not msg.error():
            got.append(msg)
    assert len(got) == 5
    consumer.commit(message=got[4], asynchronous=False)
    consumer.close()
    sampler = kafka_bus.Sampler(kafka.url, topic, "event_routing_backends")
    try:
        s = sampler.sample()
    finally:
        sampler.close()
    by_partition = {p["partition"]: p["lag"] for p in s["partitions"]}
    assert by_partition[0] == 12 - 5
    assert s["lag"] == 7 and s["group"] == "event_routing_backends"


def test_kafka_bus_lag_of_a_group_that_never_joined_nor_committed_is_unknown_not_zero(kafka):
    from confluent_kafka import Producer

    topic, group = f"nogroup-{uuid.uuid4().hex[:8]}", f"never-{uuid.uuid4().hex[:8]}"
    producer = Producer({"bootstrap.servers": kafka.url, "linger.ms": 0})
    for i in range(3):
        producer.produce(topic, value=str(i).encode(), partition=0)
        producer.flush(10)
    sampler = kafka_bus.Sampler(kafka.url, topic, group)
    try:
        s = sampler.sample()
        assert (s["lag"], s["lag_unknown"], sampler.backlog(s)) == (
            None, f"consumer group {group} has committed nothing on {topic} and has no member", None)
    finally:
        sampler.close()


# -- vector ---------------------------------------------------------------------------------------
class _Serve(BaseHTTPRequestHandler):
    body = b""
    content_type = "text/plain; version=0.0.4"

    def do_GET(self):  # noqa: N802
        self.send_response(200)
        self.send_header("Content-Type", self.content_type)
        self.end_headers()
        self.wfile.write(self.body)

    do_POST = do_GET  # noqa: N815

    def log_message(self, *args):
        pass


@pytest.fixture
def http_server():
    servers = []

    def serve(body: bytes, content_type: str = "text/plain; version=0.0.4") -> str:
        handler = type("H", (_Serve,), {"body": body, "content_type": content_type})
        srv = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        threading.Thread(target=srv.serve_forever, daemon=True).start()
        servers.append(srv)
        return f"http://127.0.0.1:{srv.server_address[1]}"

    yield serve
    for srv in servers:
        srv.shutdown()


def test_vector_reads_the_prometheus_exporter(http_server):
    # Recorded exposition of a Vector 0.54 prometheus_exporter sink fed by internal_metrics.
    url = http_server((FIXTURES / "vector-metrics.prom").read_bytes())
    s = vector.Sampler(url + "/metrics", "clickhouse_xapi").sample()
    assert (s["events_received"], s["events_sent"], s["errors"], s["lag"]) == (1530.0, 1500.0, 3.0, 30.0)


def test_vector_sums_several_instances(http_server):
    body = (FIXTURES / "vector-metrics.prom").read_bytes()
    urls = ",".join([http_server(body) + "/metrics", http_server(body) + "/metrics"])
    s = vector.Sampler(urls, "clickhouse_xapi").sample()
    assert (s["events_received"], s["events_sent"], s["instances"]) == (3060.0, 3000.0, 2)


def test_vector_graphql_for_old_versions(http_server):
    url = http_server((FIXTURES / "vector-graphql.json").read_bytes(), "application/json")
    s = vector.Sampler("", "clickhouse_xapi", graphql_url=url + "/graphql").sample()
    assert (s["events_received"], s["events_sent"], s["lag"], s["source"]) == (20.0, 10.0, 10.0, "graphql")


def test_vector_unknown_component_is_an_error(http_server):
    url = http_server((FIXTURES / "vector-metrics.prom").read_bytes())
    with pytest.raises(LookupError, match="no metrics for Vector component 'nope'"):
        vector.Sampler(url, "nope").sample()


# -- clickhouse -----------------------------------------------------------------------------------
def test_clickhouse_freshness_from_parts_and_a_bounded_window(clickhouse, ch):
    ch.execute("CREATE DATABASE IF NOT EXISTS xapi_fresh")
    ch.execute("DROP TABLE IF EXISTS xapi_fresh.xapi_events_all")
    ch.execute("CREATE TABLE xapi_fresh.xapi_events_all (event_id UUID, emission_time DateTime, event String) "
               "ENGINE = ReplacingMergeTree PARTITION BY toYYYYMM(emission_time) ORDER BY (emission_time, event_id)")
    now = datetime.now(UTC).replace(microsecond=0)
    rows = [(uuid.uuid4(), now - timedelta(seconds=30 + i), "{}") for i in range(500)]
    ch.execute("INSERT INTO xapi_fresh.xapi_events_all (event_id, emission_time, event) VALUES", rows)
    s = ch_sampler.Sampler(clickhouse.url, "xapi_fresh", "xapi_events_all").sample()
    assert s["total_rows"] == 500
    assert s["most_recent_event"].startswith((now - timedelta(seconds=30)).strftime("%Y-%m-%d %H:%M:%S"))
    assert 29 <= s["lag_seconds"] <= 40
    assert s["max_parts_per_partition"] >= 1 and "running_queries" in s


def test_clickhouse_newest_event_outside_the_first_window(clickhouse, ch):
    ch.execute("CREATE DATABASE IF NOT EXISTS xapi_old")
    ch.execute("DROP TABLE IF EXISTS xapi_old.t")
    ch.execute("CREATE TABLE xapi_old.t (event_id UUID, emission_time DateTime, event String) "
               "ENGINE = ReplacingMergeTree ORDER BY (emission_time, event_id)")
    two_hours = datetime.now(UTC) - timedelta(hours=2)
    ch.execute("INSERT INTO xapi_old.t (event_id, emission_time, event) VALUES", [(uuid.uuid4(), two_hours, "{}")])
    s = ch_sampler.Sampler(clickhouse.url, "xapi_old", "t").sample()
    assert 7190 <= s["lag_seconds"] <= 7300


# -- host and the registry --------------------------------------------------------------------------
HOST_FIGURES = {"cpu_percent", "load1", "cpus", "mem_total_bytes", "mem_available_bytes", "disk_free_bytes",
                "disk_used_percent", "disk_read_bytes_per_s", "disk_write_bytes_per_s", "net_rx_bytes_per_s",
                "net_tx_bytes_per_s"}


def test_host_sampler_reports_rates():
    s = host.Sampler()
    wait_for(lambda: s.sample()["cpu_percent"] >= 0, what="a host sample")
    sample = s.sample()
    assert set(sample) == HOST_FIGURES and not s.missing
    assert 0 <= sample["cpu_percent"] <= 100 and sample["mem_total_bytes"] > 0 and sample["disk_free_bytes"] > 0


# In a user and mount namespace of its own, /proc is hidden under an empty tmpfs (as on a machine
# without procfs): the sampler must still start and sample what the platform gives.
WITHOUT_PROC = """
import json, sys
try:
    open("/proc/stat").close()
    sys.exit("/proc is still there")
except FileNotFoundError:
    pass
from monitors import host
s = host.Sampler()
s.sample()
print(json.dumps({"sample": s.sample(), "missing": sorted(s.missing)}))
"""


@pytest.mark.skipif(shutil.which("unshare") is None, reason="util-linux unshare is not installed")
def test_host_sampler_runs_where_there_is_no_proc():
    done = subprocess.run(["unshare", "--user", "--map-root-user", "--mount", "sh", "-c",
                           'mount -t tmpfs none /proc && exec "$0" -c "$1"', sys.executable, WITHOUT_PROC],
                          cwd=REPO, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, log_of(done.stderr)
    out = json.loads(done.stdout)
    sample = out["sample"]
    assert sample["cpus"] > 0 and sample["disk_free_bytes"] > 0 and sample["load1"] >= 0, sample
    assert set(sample) <= HOST_FIGURES and "cpu_percent" not in sample, sample  # CPU times live in /proc here
    assert "CPU times" in out["missing"]
    assert done.stderr.count("the host's CPU times cannot be read here") == 1, done.stderr  # said once


def test_backends_accept_repeated_and_comma_separated_names():
    assert sampling.parse_backends(["celery,redis_bus", "celery", "kafka_bus"]) == ["celery", "redis_bus", "kafka_bus"]


def test_unknown_backend_is_a_one_line_error():
    with pytest.raises(ValueError) as err:
        sampling.parse_backends(["rabbit"])
    assert str(err.value) == ("--monitor-backend 'rabbit' is unknown; expected one of: celery, redis_bus, "
                              "kafka_bus, vector")


class _Fixed:
    drains = True

    def __init__(self, backlog: int) -> None:
        self.value = backlog

    def sample(self) -> dict:
        return {"n": self.value}

    def backlog(self, sample: dict) -> int:
        return sample["n"]


class _SentMinusStored(_Fixed):
    """The end-to-end check's backlog (sent − stored), as `monitors.xapi_e2e.EndToEnd` counts it: it
    counts events a bus lost too."""

    counts_lost = True


class _GrowingSamplers(dict):
    """Gains a sampler after the sample has started its calls: what a listener does when it adds its
    sampler at a gevent switch during a sample (the tracking run's e2e at its test start)."""

    def items(self):
        listed = list(super().items())
        self.setdefault("late", _Fixed(5))
        return listed


def test_a_sampler_added_during_a_sample_is_first_asked_at_the_next():
    sampling = Sampling(_GrowingSamplers(bus=_Fixed(3)))
    _, stats, backlog = sampling.take()
    assert (stats, backlog) == ({"bus": {"n": 3}}, 3)
    _, stats, backlog = sampling.take()
    assert (stats, backlog) == ({"bus": {"n": 3}, "late": {"n": 5}}, 8)
