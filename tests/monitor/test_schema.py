"""The monitor's DDL and every sampler query run on ClickHouse 18.16 and on current ClickHouse (chDB)."""

from __future__ import annotations

import pytest

from monitors import __main__ as standalone
from monitors import clickhouse as ch_sampler
from monitors import schema
from tests.monitor.conftest import chdb_render

XAPI_DDL = [
    "CREATE DATABASE IF NOT EXISTS xapi_schema_test",
    "CREATE TABLE IF NOT EXISTS xapi_schema_test.xapi_events_all (event_id UUID, emission_time DateTime, "
    "event String) ENGINE = ReplacingMergeTree PARTITION BY toYYYYMM(emission_time) "
    "ORDER BY (emission_time, event_id)",
]


def sampler_queries() -> list[tuple[str, dict]]:
    return [
        (ch_sampler.SQL_ROWS, {"d": "xapi_schema_test", "t": "xapi_events_all"}),
        (ch_sampler.SQL_NEWEST.format(col="emission_time", db="xapi_schema_test", table="xapi_events_all",
                                      window=300), {}),
        (ch_sampler.SQL_METRICS, {"m": ch_sampler.METRICS}),
        (ch_sampler.SQL_MAX_PARTS, {}),
        (ch_sampler.SQL_EVENTS, {"e": ch_sampler.EVENTS}),
        (standalone.FIND_RUN.format(db="monitor_ddl_test"), {}),
        (standalone.HAS_ENDED.format(db="monitor_ddl_test"), {"r": "20261124-000000-00000000"}),
    ]


def test_monitor_ddl_runs_on_clickhouse_18(ch):
    schema.ensure(ch, "monitor_ddl_test")
    schema.ensure(ch, "monitor_ddl_test")  # idempotent
    tables = {r[0] for r in ch.execute("SHOW TABLES FROM monitor_ddl_test")}
    assert tables == set(schema.COLUMNS)


def test_monitor_ddl_runs_on_current_clickhouse(chdb_session):
    for sql in schema.statements("monitor_ddl_test"):
        chdb_session.query(sql)
    out = chdb_session.query("SELECT name FROM system.tables WHERE database = 'monitor_ddl_test' ORDER BY name", "CSV")
    assert {line.strip('"') for line in str(out).split()} == set(schema.COLUMNS)


def test_typed_columns_match_the_ddl(ch):
    schema.ensure(ch, "monitor_ddl_test")
    for table, columns in schema.COLUMNS.items():
        got = [r[0] for r in ch.execute(f"DESCRIBE TABLE monitor_ddl_test.{table}")]
        assert got == list(columns), table


@pytest.mark.parametrize("index", range(7))
def test_sampler_query_runs_on_both_engines(ch, chdb_session, index):
    schema.ensure(ch, "monitor_ddl_test")
    for sql in schema.statements("monitor_ddl_test"):
        chdb_session.query(sql)
    for sql in XAPI_DDL:
        ch.execute(sql)
        chdb_session.query(sql)
    sql, params = sampler_queries()[index]
    ch.execute(sql, params)
    chdb_session.query(chdb_render(sql, params))


# load_test_request_stats as first released, before timing and the histogram columns.
OLD_REQUEST_STATS = (
    "CREATE TABLE {db}.load_test_request_stats (run_id String, timestamp DateTime, time_ms UInt64, "
    "interval_s Float64, request_type String, name String, requests UInt64, failures UInt64, rps Float64, "
    "fail_rps Float64, avg_ms Float64, p50_ms Float64, p95_ms Float64, p99_ms Float64, max_ms Float64, "
    "users UInt32) ENGINE = MergeTree PARTITION BY toYYYYMM(timestamp) ORDER BY (run_id, timestamp, request_type, name)"
)


def test_an_older_table_gets_the_new_columns_on_clickhouse_18(ch):
    ch.execute("DROP DATABASE IF EXISTS monitor_upgrade_test")
    ch.execute("CREATE DATABASE monitor_upgrade_test")
    ch.execute(OLD_REQUEST_STATS.format(db="monitor_upgrade_test"))
    ch.execute("INSERT INTO monitor_upgrade_test.load_test_request_stats (run_id, name, requests) VALUES",
               [("old-run", "Aggregated", 3)])
    schema.ensure(ch, "monitor_upgrade_test")
    schema.ensure(ch, "monitor_upgrade_test")  # idempotent
    got = [r[0] for r in ch.execute("DESCRIBE TABLE monitor_upgrade_test.load_test_request_stats")]
    assert got == list(schema.COLUMNS["load_test_request_stats"])
    # Rows written before keep their figures and count as service time, without a histogram.
    assert ch.execute("SELECT requests, timing, buckets FROM monitor_upgrade_test.load_test_request_stats") == [
        (3, "service", [])]


def test_an_older_table_gets_the_new_columns_on_current_clickhouse(chdb_session):
    chdb_session.query("DROP DATABASE IF EXISTS monitor_upgrade_test")
    chdb_session.query("CREATE DATABASE monitor_upgrade_test")
    chdb_session.query(OLD_REQUEST_STATS.format(db="monitor_upgrade_test"))
    out = chdb_session.query(chdb_render(schema.SQL_COLUMNS, {"d": "monitor_upgrade_test"}), "CSV")
    existing = {tuple(line.replace('"', "").split(",")) for line in str(out).split()}
    needed = schema.upgrades(existing, "monitor_upgrade_test")
    assert [sql.split()[5] for sql in needed] == ["timing", "buckets", "counts"]
    for sql in needed:
        chdb_session.query(sql)
    out = chdb_session.query("SELECT name FROM system.columns WHERE database = 'monitor_upgrade_test' "
                             "AND table = 'load_test_request_stats' ORDER BY position", "CSV")
    assert [line.strip('"') for line in str(out).split()] == list(schema.COLUMNS["load_test_request_stats"])


def test_bad_database_name_is_refused():
    with pytest.raises(ValueError, match="database name 'x; DROP' is not a plain identifier"):
        schema.statements("x; DROP")


class _Rows:
    """A sink that keeps what it is given: the rows the monitor would insert."""

    def __init__(self) -> None:
        self.rows: list[tuple[str, dict]] = []

    def add(self, table: str, row: dict) -> None:
        self.rows.append((table, row))


def test_the_rows_of_an_unknown_lag_insert_on_both_engines(ch, chdb_session):
    """A stream no consumer group reads: its lag is missing from the rows (no 0), the run's end row says
    why; every row fits the typed columns on ClickHouse 18.16 and on current ClickHouse."""
    import json
    from datetime import datetime

    from monitors.loop import store_sample

    why = "no consumer group reads stream s-analytics"
    sink = _Rows()
    stats = {"redis_bus": {"stream": "s-analytics", "total_events": 5, "lag": None, "pending": None, "groups": [],
                           "lag_unknown": why}}
    store_sample(sink, "r-unknown", 1.8e9, stats, None)
    sink.add("load_test_meta", {"run_id": "r-unknown", "version": 2, "started": 1.8e9, "ended": 1.8e9 + 5,
                                "exit_code": 0, "drained": None, "drain_seconds": 0.3, "max_backlog": 0,
                                "extra": json.dumps({"lag_unknown": why})})
    assert {r["metric"] for t, r in sink.rows if t == "load_test_samples"} == {"total_events"}  # no lag, no backlog
    schema.ensure(ch, "monitor_ddl_test")
    for sql in schema.statements("monitor_ddl_test"):
        chdb_session.query(sql)
    for table, row in sink.rows:
        values = schema.to_tuple(table, row)
        ch.execute(schema.insert_sql(table, "monitor_ddl_test"), [values])
        doc = {c: (v.strftime("%Y-%m-%d %H:%M:%S") if isinstance(v, datetime) else v)
               for c, v in zip(schema.COLUMNS[table], values, strict=True)}
        chdb_session.query(f"INSERT INTO monitor_ddl_test.{table} FORMAT JSONEachRow {json.dumps(doc)}")
    query = "SELECT drained, extra FROM monitor_ddl_test.load_test_meta WHERE run_id = 'r-unknown'"
    (drained, extra), = ch.execute(query)
    assert (drained, json.loads(extra)["lag_unknown"]) == (0, why)
    row = json.loads(chdb_session.query(query, "JSONEachRow").bytes())
    assert (row["drained"], json.loads(row["extra"])["lag_unknown"]) == (0, why)
