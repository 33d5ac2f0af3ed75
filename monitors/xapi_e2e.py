"""Per-event end-to-end check of a tracking-event run: sent vs stored, duplicates, latency, runway.

Every generated event has a unique timestamp, and event-routing-backends copies it into the
xAPI statement's `timestamp`, so each stored statement names the event it came from. Every
--e2e-poll-interval seconds this reads, per second of event time, how many rows the xAPI table
holds for the run (a cheap scan of the primary-key column), and fetches the statements only of
seconds whose count changed. A timestamp seen for the first time is an event stored: its latency
is the poll time minus the event time, so the resolution is the poll interval (±interval/2 on
average). A timestamp seen on more than one row is a duplicate (counted before
ReplacingMergeTree merges them away). Missing = sent − stored.

Memory stays bounded however long the run: a second's timestamps are kept only until its count has
not changed for `close_after` seconds (120), then folded into its counts (events, duplicate rows).
An event stored later for a folded second is counted from the second's new totals, its latency
taken from the mean event time of that second's rows (an error under 1 s on a latency of minutes);
latencies are kept as counts per whole millisecond, so percentiles cost the same at any length.

Storage runway: bytes per stored row from `system.parts`, the run's ingest rate, and the free
space of the disk holding ClickHouse's data (measured on this machine with statvfs, as 18.16 has
no `system.disks`) give the hours until that disk is full at this rate.
"""

from __future__ import annotations

import logging
import shutil
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from monitors.schema import check_database_name
from openedx_erb.events import TIME_SLOTS
from plumbing import chclient
from plumbing.percentile import percentile_of_counts

log = logging.getLogger("monitors.e2e")

# Every statement sent (tests run them on ClickHouse 18.16 and on chDB).
SQL_PER_SECOND = ("SELECT toUInt32({col}) AS s, count() FROM {db}.{table} WHERE {col} >= toDateTime(%(start)s) "
                  "{course} GROUP BY s")
SQL_TIMESTAMPS = ("SELECT {ts} AS ts, toUInt32({col}) AS s, count() FROM {db}.{table} WHERE ({ranges}) {course} "
                  "GROUP BY ts, s")
SQL_PARTS = ("SELECT sum(bytes_on_disk), sum(rows) FROM system.parts WHERE active AND database = %(d)s "
             "AND table = %(t)s")
DEFAULT_TS_SQL = "visitParamExtractString(event, 'timestamp')"
CLOSE_AFTER = 120.0  # s a second's count stays unchanged before its timestamps are folded into counts


def _epoch(ts: str) -> float | None:
    try:
        return datetime.fromisoformat(ts.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None


def _ranges(seconds: list[int]) -> list[tuple[int, int]]:
    out: list[tuple[int, int]] = []
    for s in sorted(seconds):
        if out and s == out[-1][1] + 1:
            out[-1] = (out[-1][0], s)
        else:
            out.append((s, s))
    return out


@dataclass
class EndToEnd:
    url: str
    database: str
    table: str
    start: float  # epoch seconds: the run's first possible event time
    sent: Callable[[], int]
    poll_interval: float = 1.0
    course_id: str = ""
    time_column: str = "emission_time"
    ts_sql: str = DEFAULT_TS_SQL
    data_path: str = ""
    on_latency: Callable[[float], None] | None = None
    # Process slot -> seconds to add to its event times to read them on this process's clock (a worker on
    # another host: monitors.clocks); an event time's microseconds modulo TIME_SLOTS name its process.
    clock_offsets: Callable[[], dict[int, float]] | None = None
    name: str = "e2e"
    drains: bool = True
    # Its backlog (sent − stored) counts every event sent, those a bus lost before its pipeline read
    # them too (a sampler's `lost_unread`): the drain does not wait for those (monitors.loop).
    counts_lost: bool = True
    # Epoch seconds when the load stopped (the generator sets it): events first seen after it are told
    # apart, as the last events of a run may wait for a pipeline's partial batch or flush timer.
    load_stopped: float | None = None
    close_after: float = CLOSE_AFTER
    stored: int = 0  # distinct events seen
    duplicates: int = 0  # rows beyond the first of an event (the most seen at once)
    latencies: Counter = field(default_factory=Counter)  # whole ms -> events
    after_load: Counter = field(default_factory=Counter)  # the same, of events first seen after load_stopped
    first_seen: float | None = None
    last_seen: float | None = None
    errors: int = 0
    last_error: str = ""
    corrected: dict[int, float] = field(default_factory=dict)  # slot -> offset (s) applied to its events
    by_process: dict[int, Counter] = field(default_factory=dict)  # slot -> its events' latencies (whole ms), corrected
    _per_second: dict[int, int] = field(default_factory=dict)
    _open: dict[int, dict[str, int]] = field(default_factory=dict)  # second -> event timestamp -> most rows at once
    _touched: dict[int, float] = field(default_factory=dict)  # open second -> when its rows last changed
    _closed: dict[int, tuple[int, int]] = field(default_factory=dict)  # folded second -> (events, duplicate rows)
    _client: object = None
    # One connection, one query at a time: the polling loop, the end's last poll and the runway share it
    # (a second query on a busy clickhouse-driver connection fails, and the runway went missing).
    lock: threading.RLock = field(default_factory=threading.RLock, repr=False, compare=False)

    def __post_init__(self) -> None:
        for ident in (self.database, self.table, self.time_column):
            check_database_name(ident)
        chclient.parse_url(self.url)

    # -- polling -------------------------------------------------------------------------------
    def _c(self):
        if self._client is None:
            self._client = chclient.connect(self.url)
        return self._client

    def _course(self) -> tuple[str, dict]:
        return ("AND position(event, %(course)s) > 0", {"course": self.course_id}) if self.course_id else ("", {})

    def queries(self) -> dict[str, tuple[str, dict]]:
        """The statements poll() sends, with example parameters (for tests on both servers)."""
        course, params = self._course()
        return {
            "per_second": (SQL_PER_SECOND.format(col=self.time_column, db=self.database, table=self.table,
                                                 course=course), {"start": int(self.start), **params}),
            "timestamps": (SQL_TIMESTAMPS.format(ts=self.ts_sql, col=self.time_column, db=self.database,
                                                 table=self.table, course=course,
                                                 ranges=self._range_sql([(int(self.start), int(self.start) + 2)])),
                           params),
            "parts": (SQL_PARTS, {"d": self.database, "t": self.table}),
        }

    def _range_sql(self, ranges: list[tuple[int, int]]) -> str:
        col = self.time_column
        return " OR ".join(f"({col} >= toDateTime({a}) AND {col} < toDateTime({b + 1}))" for a, b in ranges)

    def poll(self) -> int:
        """One look at ClickHouse; returns how many events were seen for the first time."""
        with self.lock:
            return self._poll()

    def _poll(self) -> int:
        course, params = self._course()
        try:
            client = self._c()
            offsets = self.clock_offsets() if self.clock_offsets else {}
            # A worker whose clock is behind stamps its events before the run's start on this clock.
            start = self.start - max([0.0, *offsets.values()])
            counts = client.execute(SQL_PER_SECOND.format(col=self.time_column, db=self.database, table=self.table,
                                                          course=course), {"start": int(start), **params})
            changed = [s for s, n in counts if self._per_second.get(s) != n]
            if not changed:
                return 0
            sql = SQL_TIMESTAMPS.format(ts=self.ts_sql, col=self.time_column, db=self.database, table=self.table,
                                        course=course,
                                        ranges=self._range_sql(_ranges(changed)))
            rows = client.execute(sql, params)
        except Exception as exc:  # noqa: BLE001 - a dead ClickHouse is retried at the next poll
            self.errors += 1
            self.last_error = str(exc).splitlines()[0][:200]
            if self._client is not None:
                self._client.disconnect()
            self._client = None
            return 0
        now = time.time()
        by_second: dict[int, list[tuple[str, int]]] = {}
        for ts, sec, n in rows:
            by_second.setdefault(sec, []).append((ts, n))
        new = 0
        for sec, sec_rows in by_second.items():
            if sec in self._closed:
                new += self._recount(sec, sec_rows, now)
                continue
            held = self._open.setdefault(sec, {})
            self._touched[sec] = now
            for ts, n in sec_rows:
                if ts in held:
                    if n > held[ts]:
                        self.duplicates += n - held[ts]
                        held[ts] = n
                    continue
                t = _epoch(ts)
                if t is None:
                    continue  # not one of ours (another writer's odd timestamp)
                held[ts] = n
                self.duplicates += n - 1
                new += 1
                slot = round(t * 1_000_000) % TIME_SLOTS
                if slot in offsets:  # an event of a process whose clock is off: read on this one's
                    t += offsets[slot]
                    self.corrected[slot] = offsets[slot]
                else:
                    slot = None
                self._record(max(0.0, (now - t) * 1000), now, slot)
        if new:
            self.stored += new
            self.first_seen = self.first_seen or now
            self.last_seen = now
        for s, n in counts:
            self._per_second[s] = n
        for sec in [s for s, t in self._touched.items() if now - t >= self.close_after]:
            held = self._open.pop(sec)
            del self._touched[sec]
            self._closed[sec] = (len(held), sum(n - 1 for n in held.values()))
        return new

    def _record(self, ms: float, now: float, slot: int | None = None) -> None:
        key = round(ms)
        self.latencies[key] += 1
        if self.load_stopped is not None and now > self.load_stopped:
            self.after_load[key] += 1
        if slot is not None:
            self.by_process.setdefault(slot, Counter())[key] += 1
        if self.on_latency:
            self.on_latency(ms)

    def _recount(self, sec: int, sec_rows: list[tuple[str, int]], now: float) -> int:
        """A folded second whose count changed: its events and duplicates from all its rows, the new
        events' latency from the mean event time of the rows (their own times are no longer told apart)."""
        times = [(t, n) for ts, n in sec_rows if (t := _epoch(ts)) is not None]
        events_before, dups_before = self._closed[sec]
        dups = sum(n - 1 for _t, n in times)
        self.duplicates += max(dups - dups_before, 0)
        fresh = max(len(times) - events_before, 0)
        if fresh:
            mean = sum(t for t, _n in times) / len(times)
            for _ in range(fresh):
                self._record(max(0.0, (now - mean) * 1000), now)
        self._closed[sec] = (max(len(times), events_before), max(dups, dups_before))
        return fresh

    # -- figures -------------------------------------------------------------------------------
    def runway(self) -> dict:
        out: dict = {}
        try:
            with self.lock:
                size, rows = self._c().execute(SQL_PARTS, {"d": self.database, "t": self.table})[0]
        except Exception as exc:  # noqa: BLE001 - the runway is left out, and why is logged
            log.warning("e2e: storage runway not read: %s", str(exc).splitlines()[0][:200])
            return out
        if rows:
            out["bytes_per_event"] = round(size / rows, 1)
        stored = self.stored
        if self.last_seen and stored:  # from the run's start to the last event stored
            out["ingest_events_per_s"] = round(stored / max(self.last_seen - self.start, 1e-3), 1)
        if self.data_path and Path(self.data_path).exists():
            out["free_disk_bytes"] = shutil.disk_usage(self.data_path).free
            rate = out.get("ingest_events_per_s")
            if rate and out.get("bytes_per_event"):
                out["hours_until_disk_full"] = round(out["free_disk_bytes"] / (out["bytes_per_event"] * rate) / 3600, 1)
        return out

    def summary(self, with_runway: bool = False) -> dict:
        sent = self.sent()
        lat = self.latencies
        out = {
            "sent": sent,
            "stored": self.stored,
            "missing": max(sent - self.stored, 0),
            "duplicates": self.duplicates,
            "p50_ms": float(percentile_of_counts(lat, 0.50)),
            "p95_ms": float(percentile_of_counts(lat, 0.95)),
            "p99_ms": float(percentile_of_counts(lat, 0.99)),
            "max_ms": float(max(lat)) if lat else 0.0,
            "resolution_ms": round(self.poll_interval * 1000),
            "poll_errors": self.errors,
        }
        after = self.after_load
        if after:
            before = lat - after
            out["after_load"] = {"events": sum(after.values()), "p50_ms": float(percentile_of_counts(after, 0.50)),
                                 "max_ms": float(max(after))}
            out["while_loading"] = {"events": sum(before.values()),
                                    "p95_ms": float(percentile_of_counts(before, 0.95)),
                                    "p99_ms": float(percentile_of_counts(before, 0.99))}
        if self.corrected:  # event times of other hosts' clocks, read on this one's
            out["clock_offsets_ms"] = {str(k): round(v * 1000, 1) for k, v in sorted(self.corrected.items())}
            out["p50_ms_by_process"] = {str(k): float(percentile_of_counts(v, 0.50))
                                        for k, v in sorted(self.by_process.items())}
        if with_runway:
            out["runway"] = self.runway()
        return out

    # the monitor's sampler interface
    def sample(self) -> dict:
        s = self.summary()
        if self.last_error and self.errors:
            s["last_error"] = self.last_error
        return s

    def backlog(self, sample: dict) -> int | None:
        return sample.get("missing")

    def close(self) -> None:
        if self._client is not None:
            self._client.disconnect()
            self._client = None


def summary_line(run_id: str, s: dict) -> str:
    line = (f"tracking run {run_id}: sent {s['sent']:,}, stored {s['stored']:,}, missing {s['missing']:,}, "
            f"duplicates {s['duplicates']:,}; event→ClickHouse latency p50 {s['p50_ms']:.0f} ms, "
            f"p95 {s['p95_ms']:.0f} ms, p99 {s['p99_ms']:.0f} ms (resolution {s['resolution_ms']} ms)")
    after = s.get("after_load")
    if after:
        line += (f"; {after['events']:,} stored after the load stopped (p50 {after['p50_ms']:.0f} ms), the "
                 f"{s['while_loading']['events']:,} before it p99 {s['while_loading']['p99_ms']:.0f} ms")
    r = s.get("runway") or {}
    if r.get("bytes_per_event"):
        line += f"; {r['bytes_per_event']:.0f} bytes/event on disk"
    if r.get("hours_until_disk_full") is not None:
        line += (f", {r['ingest_events_per_s']:.0f} events/s fill the {r['free_disk_bytes'] / 1e9:.1f} GB free in "
                 f"{r['hours_until_disk_full']:.1f} h")
    return line
