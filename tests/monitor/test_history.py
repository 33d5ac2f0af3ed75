"""The web UI's chart points: one per sample, one unit per chart, bounded memory for long runs."""

from __future__ import annotations

from monitors.history import UNITS, History, points


def _row(request_type: str, name: str, rps: float, p50: float = 0.0, p95: float = 0.0) -> dict:
    return {"timing": "service", "request_type": request_type, "name": name, "rps": rps, "p50_ms": p50, "p95_ms": p95}


def test_a_sample_becomes_one_point_per_figure_each_in_a_chart_of_its_unit():
    stats = {"clickhouse": {"total_rows": 10, "lag_seconds": 2.5}, "host": {"cpu_percent": 40.0},
             "celery": {"lag": 7, "batch_queue_length": 3, "dead_queue_length": 0},
             "mosquitto": {"clients_connected": 12, "messages_received_per_s": 80.0},
             "kafka_latency": {"100": {"p50_ms": 12.0, "p95_ms": 30.0}}, "redis_bus": {"error": "down"}}
    rows = [_row("POST", "tracking", 95.0), _row("DROPPED", "tracking events", 5.0),
            _row("E2E", "event → ClickHouse", 1.0, 210.0, 480.0), _row("", "Aggregated", 101.0)]
    got = points(stats, {"celery": 7, "e2e": 4, "host": None, "redis_bus": None}, rows, stored_per_s=90.0)
    assert got == {
        ("backlog", "celery"): 7, ("backlog", "sent − stored"): 4,
        ("backlog", "celery batch queue"): 3, ("backlog", "celery dead-letter queue"): 0,
        ("clickhouse_lag", "clickhouse"): 2.5, ("host", "cpu"): 40.0,
        ("mqtt_clients", "connected"): 12, ("mqtt_messages", "received"): 80.0,
        ("kafka_windows", "last 100 p50"): 12.0, ("kafka_windows", "last 100 p95"): 30.0,
        ("e2e", "event → ClickHouse p50"): 210.0, ("e2e", "event → ClickHouse p95"): 480.0,
        ("throughput", "offered"): 100.0, ("throughput", "dropped"): 5.0, ("throughput", "stored"): 90.0,
    }
    assert {chart for chart, _ in got} <= set(UNITS)


def test_every_series_has_a_value_or_none_at_every_instant():
    h = History()
    h.add(1.0, {("host", "cpu"): 10.0})
    h.add(2.0, {("host", "cpu"): 20.0, ("backlog", "celery"): 5.0})
    h.add(3.0, {("backlog", "celery"): 6.0})
    out = h.as_json()
    assert out["times"] == [1.0, 2.0, 3.0]
    values = {(c["key"], s["name"]): s["values"] for c in out["charts"] for s in c["series"]}
    assert values == {("host", "cpu"): [10.0, 20.0, None], ("backlog", "celery"): [None, 5.0, 6.0]}
    assert [c["unit"] for c in out["charts"]] == ["events", "%"]


def test_a_long_run_stays_bounded_keeping_peaks_and_rates():
    h = History(max_points=100)
    for i in range(100_000):  # 28 hours of samples every second
        backlog = 5_000.0 if i == 77_777 else 10.0
        h.add(float(i), {("backlog", "bus"): backlog, ("throughput", "offered"): 100.0 + (i % 2) * 100}, covers=1.0)
    assert len(h.times) <= 100 and all(len(v) == len(h.times) for v in h.series.values())
    assert max(h.series["backlog", "bus"]) == 5_000.0  # a one-sample spike survives every merge
    rates = h.series["throughput", "offered"]
    total = sum(r * w for r, w in zip(rates, h.weights, strict=True))
    assert abs(total - 100_000 * 150.0) < 1e-6 * total  # rates merge time-weighted: no event lost or added
    assert h.samples_per_point >= 1024 and h.times[-1] == 99_999.0
