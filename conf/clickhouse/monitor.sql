-- Tables of the pipeline monitor, in database {db} (default event_sink).
-- Runs on ClickHouse 18.16 and current ClickHouse (tests execute every statement on both).
-- load_test_runs and load_test_stats are the Aspects tables (TCA migration 0034), unchanged, so
-- existing Aspects reporting keeps working; the other three are typed tables for analysis.

CREATE DATABASE IF NOT EXISTS {db};

CREATE TABLE IF NOT EXISTS {db}.load_test_runs
(
    run_id     String,
    timestamp  DateTime DEFAULT now(),
    event_type String,
    extra      String
)
ENGINE = MergeTree ORDER BY (run_id, timestamp) SETTINGS index_granularity = 8192;

CREATE TABLE IF NOT EXISTS {db}.load_test_stats
(
    run_id    String,
    timestamp DateTime DEFAULT now(),
    stats     String
)
ENGINE = MergeTree ORDER BY (run_id, timestamp) SETTINGS index_granularity = 8192;

-- One row per request name, timing and sampling interval: counts in the interval, its percentiles
-- and its histogram in Locust's response-time buckets (merged for exact percentiles of any span).
-- timing: 'service' (Locust's response time) or 'planned' (open model: from the planned start).
CREATE TABLE IF NOT EXISTS {db}.load_test_request_stats
(
    run_id       String,
    timestamp    DateTime,
    time_ms      UInt64,
    interval_s   Float64,
    request_type String,
    name         String,
    requests     UInt64,
    failures     UInt64,
    rps          Float64,
    fail_rps     Float64,
    avg_ms       Float64,
    p50_ms       Float64,
    p95_ms       Float64,
    p99_ms       Float64,
    max_ms       Float64,
    users        UInt32,
    timing       String DEFAULT 'service',
    buckets      Array(UInt32),
    counts       Array(UInt64)
)
ENGINE = MergeTree PARTITION BY toYYYYMM(timestamp) ORDER BY (run_id, timestamp, request_type, name);

-- Columns added since the first release. ClickHouse 18.16 has no ADD COLUMN IF NOT EXISTS:
-- monitors.schema.ensure runs each of these only on a table that lacks the column.
ALTER TABLE {db}.load_test_request_stats ADD COLUMN timing String DEFAULT 'service';
ALTER TABLE {db}.load_test_request_stats ADD COLUMN buckets Array(UInt32);
ALTER TABLE {db}.load_test_request_stats ADD COLUMN counts Array(UInt64);

-- One row per numeric figure of a monitor sample (source = clickhouse, redis_bus, host, …).
CREATE TABLE IF NOT EXISTS {db}.load_test_samples
(
    run_id    String,
    timestamp DateTime,
    time_ms   UInt64,
    source    String,
    metric    String,
    value     Float64
)
ENGINE = MergeTree PARTITION BY toYYYYMM(timestamp) ORDER BY (run_id, source, metric, timestamp);

-- Run metadata; the newest version of a run's row wins (read with FINAL or argMax on version).
CREATE TABLE IF NOT EXISTS {db}.load_test_meta
(
    run_id         String,
    version        UInt64,
    started        DateTime,
    ended          DateTime,
    locustfile     String,
    host           String,
    tags           Array(String),
    options        String,
    versions       String,
    exit_code      Int32,
    drained        UInt8,
    drain_seconds  Float64,
    max_backlog    Int64,
    extra          String
)
ENGINE = ReplacingMergeTree(version) ORDER BY run_id;

-- Rolling windows of the Kafka end-to-end latency consumer (monitors/kafka_latency.py).
CREATE TABLE IF NOT EXISTS {db}.load_test_kafka_latency
(
    run_id      String,
    timestamp   DateTime,
    topic       String,
    stat_window String,
    messages    UInt64,
    avg_ms      Float64,
    p50_ms      Float64,
    p95_ms      Float64,
    p99_ms      Float64,
    max_ms      Float64,
    msgs_per_s  Float64,
    negative    UInt64,
    in_seconds  UInt64,
    invalid     UInt64,
    duplicates  UInt64
)
ENGINE = MergeTree PARTITION BY toYYYYMM(timestamp) ORDER BY (run_id, topic, timestamp);
