"""The monitor's ClickHouse tables: DDL from conf/clickhouse/monitor.sql and each table's columns.

Rows travel through the suite as plain dicts (JSON-able, so they can be spilled to a file);
`to_tuple` turns one into the column order and types clickhouse-driver inserts.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from pathlib import Path

from plumbing import settings

DDL_FILE = Path(__file__).resolve().parent.parent / "conf" / "clickhouse" / "monitor.sql"

# Column name -> kind: s string, dt DateTime (epoch seconds in the dict), u/i int, f float, a Array(String),
# au Array of unsigned ints
COLUMNS: dict[str, dict[str, str]] = {
    "load_test_runs": {"run_id": "s", "timestamp": "dt", "event_type": "s", "extra": "s"},
    "load_test_stats": {"run_id": "s", "timestamp": "dt", "stats": "s"},
    "load_test_request_stats": {
        "run_id": "s", "timestamp": "dt", "time_ms": "u", "interval_s": "f", "request_type": "s", "name": "s",
        "requests": "u", "failures": "u", "rps": "f", "fail_rps": "f", "avg_ms": "f", "p50_ms": "f",
        "p95_ms": "f", "p99_ms": "f", "max_ms": "f", "users": "u", "timing": "s", "buckets": "au", "counts": "au",
    },
    "load_test_samples": {"run_id": "s", "timestamp": "dt", "time_ms": "u", "source": "s", "metric": "s",
                          "value": "f"},
    "load_test_meta": {
        "run_id": "s", "version": "u", "started": "dt", "ended": "dt", "locustfile": "s", "host": "s",
        "tags": "a", "options": "s", "versions": "s", "exit_code": "i", "drained": "u", "drain_seconds": "f",
        "max_backlog": "i", "extra": "s",
    },
    "load_test_kafka_latency": {
        "run_id": "s", "timestamp": "dt", "topic": "s", "stat_window": "s", "messages": "u", "avg_ms": "f",
        "p50_ms": "f", "p95_ms": "f", "p99_ms": "f", "max_ms": "f", "msgs_per_s": "f", "negative": "u",
        "in_seconds": "u", "invalid": "u", "duplicates": "u",
    },
}  # fmt: skip

_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def check_database_name(name: str) -> str:
    if not _NAME.match(name):
        raise ValueError(f"database name {name!r} is not a plain identifier (letters, digits, _)")
    return name


_ADD_COLUMN = re.compile(r"^ALTER TABLE \S+\.(\w+) ADD COLUMN (\w+) ", re.I)
SQL_COLUMNS = "SELECT table, name FROM system.columns WHERE database = %(d)s"


def _all_statements(database: str) -> list[str]:
    text = DDL_FILE.read_text().replace("{db}", check_database_name(database))
    body = "\n".join(line for line in text.splitlines() if not line.lstrip().startswith("--"))
    return [s.strip() for s in body.split(";") if s.strip()]


def statements(database: str = settings.MONITOR_DATABASE.default) -> list[str]:
    """The CREATE statements, in order, for `database` (idempotent; new tables get every column)."""
    return [s for s in _all_statements(database) if not _ADD_COLUMN.match(s)]


def added_columns(database: str = settings.MONITOR_DATABASE.default) -> list[tuple[str, str, str]]:
    """(table, column, ALTER statement) of every column added since a table's first release."""
    out = []
    for sql in _all_statements(database):
        m = _ADD_COLUMN.match(sql)
        if m:
            out.append((m.group(1), m.group(2), sql))
    return out


def upgrades(existing: set[tuple[str, str]], database: str = settings.MONITOR_DATABASE.default) -> list[str]:
    """The ALTER statements a database with these (table, column) pairs still needs."""
    return [sql for table, column, sql in added_columns(database) if (table, column) not in existing]


def ensure(client, database: str = settings.MONITOR_DATABASE.default) -> None:
    """Create the database and tables unless they exist, and add columns an older table lacks (idempotent)."""
    for sql in statements(database):
        client.execute(sql)
    existing = {(t, c) for t, c in client.execute(SQL_COLUMNS, {"d": database})}
    for sql in upgrades(existing, database):
        try:
            client.execute(sql)
        except Exception:
            # Another process may have added it since we looked: only a column still missing is an error.
            now = {(t, c) for t, c in client.execute(SQL_COLUMNS, {"d": database})}
            if sql in upgrades(now, database):
                raise


# Values of columns a row written by an older version lacks (e.g. replayed from a spill file).
DEFAULTS = {"timing": "service"}


def to_tuple(table: str, row: dict) -> tuple:
    out = []
    for col, kind in COLUMNS[table].items():
        v = row.get(col, DEFAULTS.get(col))
        if kind == "s":
            out.append("" if v is None else str(v))
        elif kind == "dt":
            out.append(datetime.fromtimestamp(float(v or 0), UTC))  # aware: no server-timezone guess
        elif kind in ("u", "i"):
            out.append(int(v or 0))
        elif kind == "f":
            out.append(float(v or 0.0))
        elif kind == "au":
            out.append([int(x) for x in (v or [])])
        else:
            out.append([str(x) for x in (v or [])])
    return tuple(out)


def insert_sql(table: str, database: str) -> str:
    return f"INSERT INTO {database}.{table} ({', '.join(COLUMNS[table])}) VALUES"
