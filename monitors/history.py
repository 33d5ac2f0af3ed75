"""The run's pipeline figures over time, for the web UI's charts: one point per monitor sample.

Each chart holds figures of one unit (events, s, ms, /s, %, clients), one series per source or
figure. Memory stays bounded however long the run: past `max_points` samples, neighbouring points
merge in pairs (so each point then stands for 2, 4, … samples): backlog, lag, latency and
counts keep the pair's highest value (a peak never disappears), rates the time-weighted mean.
"""

from __future__ import annotations

from dataclasses import dataclass, field

# (key, title, unit, how a merged point keeps its samples: "peak" or "rate")
CHARTS = (
    ("backlog", "Backlog per source", "events", "peak"),
    ("clickhouse_lag", "ClickHouse lag (newest row's age)", "s", "peak"),
    ("e2e", "End-to-end latency per interval", "ms", "peak"),
    ("kafka_windows", "Kafka end-to-end latency windows", "ms", "peak"),
    ("throughput", "Offered, stored and dropped per second", "/s", "rate"),
    ("mqtt_messages", "MQTT broker ($SYS) messages per second", "msg/s", "rate"),
    ("mqtt_clients", "MQTT broker ($SYS) clients connected", "clients", "peak"),
    ("host", "Load generator CPU", "%", "rate"),
)
UNITS = {key: unit for key, _title, unit, _kind in CHARTS}
MAX_POINTS = 1200  # per series; ~50 KB of JSON per chart at most

BACKLOG_NAMES = {"e2e": "sent − stored"}  # the end-to-end check's backlog: events not yet in ClickHouse
CELERY_QUEUES = {"batch_queue_length": "celery batch queue", "dead_queue_length": "celery dead-letter queue"}
MQTT_RATES = {"messages_received_per_s": "received", "messages_sent_per_s": "sent",
              "publish_dropped_per_s": "dropped"}


def points(stats: dict, backlogs: dict, request_rows: list[dict], stored_per_s: float | None) -> dict:
    """{(chart, series): value} of one sample.

    `stats` is the sample by source, `backlogs` each sampler's backlog (None: not a queue),
    `request_rows` the monitor's per-interval request rows (their percentiles are the interval's,
    from its histogram, at most its maximum), `stored_per_s` rows ClickHouse stored per second.
    """
    out: dict[tuple[str, str], float] = {}
    for source, backlog in backlogs.items():
        if backlog is not None and backlog >= 0:
            out["backlog", BACKLOG_NAMES.get(source, source)] = float(backlog)
    for source, sample in stats.items():
        if not isinstance(sample, dict) or "error" in sample:
            continue
        for key, name in CELERY_QUEUES.items():
            if isinstance(sample.get(key), (int, float)):
                out["backlog", name] = float(sample[key])
        if source == "clickhouse" and isinstance(sample.get("lag_seconds"), (int, float)):
            out["clickhouse_lag", "clickhouse"] = float(sample["lag_seconds"])
        if source == "host" and isinstance(sample.get("cpu_percent"), (int, float)):
            out["host", "cpu"] = float(sample["cpu_percent"])
        if source == "kafka_latency":  # the newest full window of each size: {"100": {...}, "1K": {...}}
            for label, window in sample.items():
                if isinstance(window, dict) and isinstance(window.get("p50_ms"), (int, float)):
                    out["kafka_windows", f"last {label} p50"] = float(window["p50_ms"])
                    out["kafka_windows", f"last {label} p95"] = float(window.get("p95_ms", 0.0))
        if source == "mosquitto":
            for key, name in MQTT_RATES.items():
                if isinstance(sample.get(key), (int, float)):
                    out["mqtt_messages", name] = float(sample[key])
            if isinstance(sample.get("clients_connected"), (int, float)):
                out["mqtt_clients", "connected"] = float(sample["clients_connected"])
    offered = dropped = 0.0
    generated = False
    for row in request_rows:
        if row.get("timing", "service") != "service" or row["name"] == "Aggregated" and not row["request_type"]:
            continue
        if row["request_type"] == "E2E":
            out["e2e", f"{row['name']} p50"] = float(row["p50_ms"])
            out["e2e", f"{row['name']} p95"] = float(row["p95_ms"])
        elif row["request_type"] == "DROPPED":
            dropped += row["rps"]
        else:
            offered += row["rps"]
            generated = True
    if generated or dropped:
        out["throughput", "offered"] = offered + dropped  # what the plan asked for: sent or dropped
        out["throughput", "dropped"] = dropped
    if stored_per_s is not None:
        out["throughput", "stored"] = stored_per_s
    return out


@dataclass
class History:
    """Points of every series at the same instants (None where a series had no value)."""

    max_points: int = MAX_POINTS
    times: list[float] = field(default_factory=list)
    weights: list[float] = field(default_factory=list)  # seconds each point covers (for merging rates)
    series: dict[tuple[str, str], list[float | None]] = field(default_factory=dict)
    samples_per_point: int = 1

    def add(self, when: float, values: dict, covers: float = 1.0) -> None:
        n = len(self.times)
        self.times.append(when)
        self.weights.append(max(covers, 1e-6))
        for key, value in values.items():
            self.series.setdefault(key, [None] * n).append(value)
        for values_of in self.series.values():
            if len(values_of) == n:
                values_of.append(None)
        if len(self.times) > self.max_points:
            self._halve()

    def _halve(self) -> None:
        kinds = {key: kind for key, _t, _u, kind in CHARTS}
        pairs = range(0, len(self.times) - 1, 2)
        odd = len(self.times) % 2 == 1
        w = self.weights
        for key, values in self.series.items():
            merged = [_merge(values[i], values[i + 1], w[i], w[i + 1], kinds.get(key[0], "peak")) for i in pairs]
            self.series[key] = merged + ([values[-1]] if odd else [])
        self.times = [self.times[i + 1] for i in pairs] + ([self.times[-1]] if odd else [])
        self.weights = [w[i] + w[i + 1] for i in pairs] + ([w[-1]] if odd else [])
        self.samples_per_point *= 2

    def as_json(self) -> dict:
        charts = []
        for key, title, unit, _kind in CHARTS:
            series = [{"name": name, "values": values} for (chart, name), values in sorted(self.series.items())
                      if chart == key]
            if series:
                charts.append({"key": key, "title": title, "unit": unit, "series": series})
        return {"times": self.times, "samples_per_point": self.samples_per_point, "charts": charts}


def _merge(a: float | None, b: float | None, wa: float, wb: float, kind: str) -> float | None:
    if a is None or b is None:
        return b if a is None else a
    if kind == "rate":
        return (a * wa + b * wb) / (wa + wb)
    return max(a, b)
