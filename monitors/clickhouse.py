"""ClickHouse sampler: xAPI freshness and server health, at a cost that does not grow with the table.

The reference monitor ran `count(*) … FINAL` over the whole xAPI table every sample. Here
`total_rows` comes from `system.parts` (rows in active parts: exact for a table without
duplicates, an upper bound until ReplacingMergeTree merges them; the end-to-end check counts a
run's events exactly), and the newest event from a bounded window of the primary key
(`emission_time`), widened step by step only when the window holds nothing.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import UTC, datetime

from monitors import sink
from monitors.schema import check_database_name
from plumbing import chclient, settings

WINDOWS = (300, 3600, 86400)  # seconds searched for the newest event, narrowest first

# Every statement the sampler sends (tests run each on ClickHouse 18.16 and on chDB).
SQL_ROWS = "SELECT sum(rows), count() FROM system.parts WHERE active AND database = %(d)s AND table = %(t)s"
SQL_NEWEST = "SELECT max({col}), now() FROM {db}.{table} WHERE {col} >= now() - {window}"
SQL_METRICS = "SELECT metric, toInt64(value) FROM system.metrics WHERE metric IN %(m)s"
SQL_MAX_PARTS = ("SELECT max(c) FROM (SELECT count() AS c FROM system.parts WHERE active "
                 "GROUP BY database, table, partition)")
SQL_EVENTS = "SELECT event, toInt64(value) FROM system.events WHERE event IN %(e)s"

# Server figures the Aspects production docs name (system.metrics / system.events).
METRICS = ("Query", "Merge", "DelayedInserts", "PartMutation", "TCPConnection", "HTTPConnection")
EVENTS = ("InsertQuery", "InsertedRows", "InsertedBytes", "DelayedInserts", "RejectedInserts",
          "FailedInsertQuery", "MergedRows")


def add_arguments(group) -> None:
    group.add_argument("--xapi-clickhouse-url", default=None, env_var="LOCUST_XAPI_CLICKHOUSE_URL",
                       help="ClickHouse holding the xAPI table (default: --clickhouse-url)")
    group.add_argument("--xapi-database", default=settings.XAPI_DATABASE.default, env_var=settings.XAPI_DATABASE.env,
                       help="database of the xAPI table (default %(default)s; Vector installs use openedx)")
    group.add_argument("--xapi-table", default=settings.XAPI_TABLE.default, env_var=settings.XAPI_TABLE.env,
                       help="raw xAPI table (default %(default)s)")
    group.add_argument("--xapi-time-column", default="emission_time", env_var="LOCUST_XAPI_TIME_COLUMN",
                       help="event-time column, first in the table's ORDER BY (default %(default)s)")


class Sampler:
    name = "clickhouse"
    drains = False  # nothing to drain: never holds up the end of a run

    def __init__(self, url: str = settings.CLICKHOUSE_URL.default, database: str = settings.XAPI_DATABASE.default,
                 table: str = settings.XAPI_TABLE.default,
                 time_column: str = "emission_time") -> None:
        for ident in (database, table, time_column):
            check_database_name(ident)
        self.url, self.database, self.table, self.time_column = url, database, table, time_column
        self._client = None
        self._last_events: dict[str, int] | None = None
        self._last_t = 0.0

    def _c(self):
        if self._client is None:
            self._client = chclient.connect(self.url)
        return self._client

    def _query(self, sql: str, params: dict | None = None) -> list[tuple]:
        try:
            return self._c().execute(sql, params or {})
        except Exception:
            if self._client is not None:
                self._client.disconnect()
            self._client = None  # reconnect on the next sample
            raise

    def freshness(self) -> dict:
        rows, parts = self._query(SQL_ROWS, {"d": self.database, "t": self.table})[0]
        newest = None
        now = None
        for window in WINDOWS:
            newest, now = self._query(SQL_NEWEST.format(col=self.time_column, db=self.database, table=self.table,
                                                         window=window))[0]
            if _epoch(newest) > 0:
                break
        lag = round(_epoch(now) - _epoch(newest)) if _epoch(newest) > 0 else None
        return {
            "total_rows": int(rows or 0),
            "active_parts": int(parts or 0),
            "most_recent_event": newest.strftime("%Y-%m-%d %H:%M:%S.%f") if _epoch(newest) > 0 else None,
            "lag_seconds": lag,
        }

    def health(self) -> dict:
        out: dict = {}
        metrics = dict(self._query(SQL_METRICS, {"m": METRICS}))
        out["running_queries"] = metrics.get("Query", 0)
        out["running_merges"] = metrics.get("Merge", 0)
        out["delayed_inserts_now"] = metrics.get("DelayedInserts", 0)
        out["max_parts_per_partition"] = self._query(SQL_MAX_PARTS)[0][0] or 0
        events = dict(self._query(SQL_EVENTS, {"e": EVENTS}))
        now = time.monotonic()
        if self._last_events is not None:
            dt = max(now - self._last_t, 1e-6)
            for key in ("InsertQuery", "InsertedRows", "InsertedBytes"):
                out[f"{_snake(key)}_per_s"] = round((events.get(key, 0) - self._last_events.get(key, 0)) / dt, 1)
        for key in ("DelayedInserts", "RejectedInserts", "FailedInsertQuery"):
            out[f"{_snake(key)}_total"] = events.get(key, 0)
        self._last_events, self._last_t = events, now
        return out

    def sample(self) -> dict:
        out = self.freshness()
        out.update(self.health())
        return out

    def backlog(self, sample: dict) -> int | None:
        return None  # freshness is not a queue; the backends say what is outstanding

    def close(self) -> None:
        if self._client is not None:
            self._client.disconnect()


def _epoch(value) -> float:
    if value is None:
        return 0.0
    if isinstance(value, datetime):
        if value.tzinfo is None:
            value = value.replace(tzinfo=UTC)
        return value.timestamp()
    return float(value)


def _snake(name: str) -> str:
    return "".join("_" + c.lower() if c.isupper() else c for c in name).lstrip("_")


@dataclass(frozen=True)
class XapiTable:
    """Where the xAPI statements are stored: the --xapi-* options (declared here) read in one place."""

    url: str
    database: str
    table: str
    time_column: str

    @classmethod
    def from_options(cls, options) -> XapiTable:
        # Without --xapi-clickhouse-url: the ClickHouse the run's rows go to (monitors.sink owns that option).
        url = options.xapi_clickhouse_url or sink.url(options)
        return cls(url, options.xapi_database, options.xapi_table, options.xapi_time_column)


def from_options(options) -> Sampler:
    x = XapiTable.from_options(options)
    return Sampler(x.url, x.database, x.table, x.time_column)
