"""Batched, loss-free writes of monitor rows to ClickHouse, apart from whoever produces them.

`Sink.add(table, row)` only appends to memory. With `start()` a writer of its own (a thread; a
greenlet under gevent's monkey-patching, where clickhouse-driver's sockets yield) sends one INSERT
per table about once a second or when `wake()`d, so a ClickHouse that hangs never holds up the
sampling: every call is bounded by the client's connect and send/receive timeouts (options
below), and meanwhile rows wait in memory up to `max_rows`, then go to a JSONL spill file (see
monitors.spill). When ClickHouse answers again the spill files meant for it are replayed first,
then memory, in order. A run never stops because its ClickHouse is down or hung. Without a
writer, `flush()` writes in the caller (tests, short scripts).

An outage or a hang is logged as one line when it starts, a reminder at most every REMIND_EVERY
seconds, and one line when ClickHouse is back: how long, how many rows waited, spilled and replayed.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import OrderedDict
from pathlib import Path

from monitors import schema, spill
from plumbing import chclient, settings
from plumbing.options import positive_float
from plumbing.redaction import redact

log = logging.getLogger("monitors.sink")

REMIND_EVERY = 30.0  # seconds between "still unreachable" lines during an outage
CONNECT_TIMEOUT = 3.0  # seconds; the defaults of --clickhouse-connect-timeout and --clickhouse-timeout
SEND_RECEIVE_TIMEOUT = 10.0


def add_target_arguments(group) -> None:
    """Where the run's rows go (--clickhouse-url, --monitor-database), on a Locust parser (group)."""
    group.add_argument("--clickhouse-url", default=settings.CLICKHOUSE_URL.default, env_var=settings.CLICKHOUSE_URL.env,
                       help="where run rows, stats and samples go: clickhouse://user[:password]@host:port/db "
                            "(password better in CLICKHOUSE_PASSWORD or CLICKHOUSE_PASSWORD_FILE)")
    group.add_argument("--monitor-database", default=settings.MONITOR_DATABASE.default,
                       env_var=settings.MONITOR_DATABASE.env,
                       help="database of load_test_runs / load_test_stats and the typed tables (default %(default)s)")


def add_arguments(group) -> None:
    """The sink's spill folder and timeouts, on a Locust or configargparse parser (group)."""
    group.add_argument("--spill-dir", default=settings.SPILL_DIR.default, env_var=settings.SPILL_DIR.env,
                       help="where rows wait (JSONL) while ClickHouse is unreachable; replayed when it answers")
    group.add_argument("--clickhouse-connect-timeout", type=positive_float, default=CONNECT_TIMEOUT,
                       env_var="LOCUST_CLICKHOUSE_CONNECT_TIMEOUT",
                       help="seconds to connect to ClickHouse before the rows wait for a retry (default %(default)g)")
    group.add_argument("--clickhouse-timeout", type=positive_float, default=SEND_RECEIVE_TIMEOUT,
                       env_var="LOCUST_CLICKHOUSE_TIMEOUT",
                       help="seconds a ClickHouse write may wait for the server (send/receive) before it counts "
                            "as hung and the rows wait for a retry (default %(default)g)")


def url(options) -> str:
    """The ClickHouse the run's rows go to: --clickhouse-url, else LOCUST_CLICKHOUSE_URL, else the one default."""
    return settings.CLICKHOUSE_URL.resolve(getattr(options, "clickhouse_url", None))


def target(options) -> tuple[str, str] | None:
    """The ClickHouse URL and database the run's rows go to; None without these options."""
    if not hasattr(options, "monitor_database"):
        return None
    return url(options), settings.MONITOR_DATABASE.resolve(options.monitor_database)


def check_target(options) -> None:
    """ValueError naming a --clickhouse-url or --monitor-database that cannot be used."""
    chclient.parse_url(url(options))
    schema.check_database_name(options.monitor_database)


def from_options(options, name: str) -> Sink:
    """A sink (not started) for the rows of `name` (a run id), as the options say."""
    return Sink(*target(options), options.spill_dir, name=name, connect_timeout=options.clickhouse_connect_timeout,
                timeout=options.clickhouse_timeout)


def check_timeouts(connect_timeout: float, timeout: float) -> None:
    """ValueError naming a timeout that is not a positive number of seconds."""
    for name, value in (("--clickhouse-connect-timeout", connect_timeout), ("--clickhouse-timeout", timeout)):
        if not value > 0:
            raise ValueError(f"{name} {value:g}: expected seconds > 0")


class Sink:
    def __init__(self, url: str, database: str = settings.MONITOR_DATABASE.default, spill_dir: Path | str | None = None,
                 name: str = "monitor", max_rows: int = 100_000, retry_interval: float = 2.0,
                 remind_every: float = REMIND_EVERY, connect_timeout: float = CONNECT_TIMEOUT,
                 timeout: float = SEND_RECEIVE_TIMEOUT, flush_every: float = 1.0) -> None:
        """`spill_dir` holds `<name>.spill.jsonl` files; the files there meant for this sink's
        destination (server and database) are replayed once it answers, so rows spilled by an earlier
        run are written by the next one that reaches the same ClickHouse; the others are kept."""
        schema.check_database_name(database)
        check_timeouts(connect_timeout, timeout)
        chclient.parse_url(url)  # a bad URL fails here, before the run
        self.url, self.database = url, database
        self.destination = spill.Destination.of(url, database)
        self.spill_dir = Path(spill_dir) if spill_dir else None
        self.spill_path = self.spill_dir / f"{name}.spill.jsonl" if self.spill_dir else None
        self.max_rows, self.retry_interval, self.remind_every = max_rows, retry_interval, remind_every
        self.connect_timeout, self.timeout, self.flush_every = connect_timeout, timeout, flush_every
        self._pending: OrderedDict[str, list[dict]] = OrderedDict((t, []) for t in schema.COLUMNS)
        self._lock = threading.Lock()  # _pending and the spill file (add() runs beside the writer)
        self._io = threading.Lock()  # one write at a time on the client
        self._wake = threading.Event()
        self._stop = False
        self._writer: threading.Thread | None = None
        self._client = None
        self._query_client = None
        self._ready = False
        self._next_try = 0.0
        self._others_said = False
        self.failures = 0  # consecutive failed flushes
        self.written = 0
        self.spilled = 0
        self.replayed = 0
        self.last_error = ""
        self._down_since: float | None = None  # monotonic start of the current outage
        self._reminded = 0.0
        self._spilled_before = 0  # `spilled` when the outage began
        self._replayed_before = 0

    # -- public ---------------------------------------------------------------------------
    def add(self, table: str, row: dict) -> None:
        if table not in self._pending:
            raise KeyError(f"unknown monitor table {table!r}")
        with self._lock:
            self._pending[table].append(row)
            if self._pending_rows() > self.max_rows:
                self._spill()

    def pending_rows(self) -> int:
        with self._lock:
            return self._pending_rows()

    def start(self) -> Sink:
        """Write from a writer of its own from now on; `add` and `wake` never wait for ClickHouse."""
        if self._writer is None:
            self._writer = threading.Thread(target=self._write_loop, name="monitor-sink", daemon=True)
            self._writer.start()
        return self

    def wake(self) -> None:
        """Rows were added: the writer sends them now rather than at its next round."""
        if self._writer is not None:
            self._wake.set()
        else:
            self.flush()

    def flush(self, force: bool = False) -> bool:
        """Write everything buffered, in the caller; False (rows kept) if ClickHouse cannot take them now."""
        with self._io:
            return self._flush(force)

    def close(self, timeout: float = 10.0) -> bool:
        """Stop the writer, flush, retrying for up to `timeout` s; then spill what is left. True if all written."""
        deadline = time.monotonic() + timeout
        if self._writer is not None:
            self._stop = True
            self._wake.set()
            # Its write in flight ends within the client's timeouts.
            self._writer.join(timeout=self.connect_timeout + 2 * self.timeout + 5)
        while True:
            if self.flush(force=True):
                self._disconnect_all()
                return True
            if time.monotonic() >= deadline:
                break
            time.sleep(min(self.retry_interval, max(0.0, deadline - time.monotonic())))
        with self._lock:
            self._spill()
        self._disconnect_all()
        log.error("ClickHouse %s unreachable at exit (%s); %d rows kept in %s — they are written "
                  "by the next run that reaches that ClickHouse (or: python -m monitors replay-spill)",
                  redact(self.url), self.last_error, self.spilled, self.spill_path)
        return False

    def query(self, sql: str, params: dict | None = None) -> list[tuple]:
        """A query on a connection of its own (the writer's is busy in its thread), bounded by the timeouts."""
        if self._query_client is None:
            self._query_client = self._new_client()
        try:
            return self._query_client.execute(sql, params or {})
        except Exception:
            self._drop(self._query_client)
            self._query_client = None
            raise

    # -- internals --------------------------------------------------------------------------
    def _pending_rows(self) -> int:
        return sum(len(rows) for rows in self._pending.values())

    def _new_client(self):
        return chclient.connect(self.url, connect_timeout=self.connect_timeout, send_receive_timeout=self.timeout)

    def _write_loop(self) -> None:
        while not self._stop:
            self._wake.wait(self.flush_every)
            self._wake.clear()
            if self._stop:
                return
            try:
                self.flush()
            except Exception:  # noqa: BLE001 - never dies: the rows stay, close() spills them
                log.exception("monitor sink: unexpected error; rows kept")

    def _flush(self, force: bool) -> bool:
        if not force and time.monotonic() < self._next_try:
            return False
        attempt = time.monotonic()
        with self._lock:  # take the rows: add() fills a fresh buffer meanwhile
            batch = self._pending
            self._pending = OrderedDict((t, []) for t in schema.COLUMNS)
        waited = sum(map(len, batch.values()))
        try:
            client = self._connect()
            self._replay_spill(client)
            for table, rows in batch.items():
                if rows:
                    self._insert(client, table, rows)
                    batch[table] = []
        except Exception as exc:  # noqa: BLE001 - any failure means "keep the rows, retry later"
            with self._lock:  # the rows not written go back in front of those added meanwhile
                for table, rows in batch.items():
                    if rows:
                        self._pending[table][:0] = rows
                if self._pending_rows() > self.max_rows:
                    self._spill()
            self._failed(exc, attempt)
            return False
        if self._down_since is not None:
            log.warning("ClickHouse %s is back after %.1f s: %d rows spilled to disk and %d replayed, "
                        "%d buffered rows written", redact(self.url), time.monotonic() - self._down_since,
                        self.spilled - self._spilled_before, self.replayed - self._replayed_before, waited)
            self._down_since = None
        self.failures = 0
        return True

    def _connect(self):
        if self._client is None:
            self._client = self._new_client()
        if not self._ready:
            schema.ensure(self._client, self.database)
            name = self._client.execute("SELECT hostName()")[0][0]
            self.destination = spill.Destination(self.destination.server, self.database, name)
            self._ready = True
        return self._client

    def _insert(self, client, table: str, rows: list[dict]) -> None:
        client.execute(schema.insert_sql(table, self.database), [schema.to_tuple(table, r) for r in rows])
        self.written += len(rows)

    @staticmethod
    def _drop(client) -> None:
        try:
            client.disconnect()
        except Exception:  # noqa: BLE001
            pass

    def _disconnect_all(self) -> None:
        for client in (self._client, self._query_client):
            if client is not None:
                self._drop(client)
        self._client = self._query_client = None
        self._ready = False

    def _failed(self, exc: Exception, attempt: float) -> None:
        self.failures += 1
        self.last_error = f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"[:200]
        self._next_try = time.monotonic() + self.retry_interval
        if self._client is not None:
            self._drop(self._client)
            self._client = None  # a hung connection is never reused
        self._ready = False
        now = time.monotonic()
        if self._down_since is None:
            self._down_since, self._reminded = attempt, now  # a hang began when the write began
            self._spilled_before, self._replayed_before = self.spilled, self.replayed
            log.warning("ClickHouse %s unreachable (%s) after %.1f s; keeping rows in memory%s and retrying",
                        redact(self.url), self.last_error, now - attempt,
                        f", then in {self.spill_path}" if self.spill_path else "")
        elif now - self._reminded >= self.remind_every:
            self._reminded = now
            log.warning("ClickHouse %s still unreachable after %.0f s (%s): %d rows in memory, %d spilled to disk",
                        redact(self.url), now - self._down_since, self.last_error, self.pending_rows(),
                        self.spilled - self._spilled_before)

    def _spill(self) -> None:
        """Memory to the spill file (the caller holds _lock)."""
        if not self.spill_path or not self._pending_rows():
            return
        self.spilled += spill.write_rows(self.spill_path, self.destination,
                                         ((t, r) for t, rows in self._pending.items() for r in rows))
        for table in self._pending:
            self._pending[table] = []

    def _replay_spill(self, client) -> None:
        others = []
        for f in spill.files(self.spill_dir):
            if f.destination is None or not self.destination.matches(f.destination):
                others.append(f)
                continue
            path = f.path
            if not path.name.endswith(".replaying"):
                # Taken under the lock: rows spilled from now on start a new file, never lost mid-replay.
                with self._lock:
                    taken = path.with_name(path.name + ".replaying")
                    path.rename(taken)
                path = taken
            destination, rows = spill.read(path)
            n = spill.insert_file(client, path, destination, rows)
            self.written += n
            self.replayed += n
            if self._down_since is None:  # rows of an earlier run; an outage's own are in its "back" line
                log.warning("replayed %d spilled rows from %s into %s", n, f.path, self.destination)
        if others and not self._others_said:
            self._others_said = True
            log.warning("kept %d spill file(s) in %s meant for other ClickHouse destinations (%s); they are "
                        "never written here: python -m monitors replay-spill list", len(others), self.spill_dir,
                        "; ".join(sorted({str(f.destination or 'unknown server') for f in others})))
