"""Batched, loss-free writes of monitor rows to ClickHouse.

`Sink.add(table, row)` only appends to memory; `flush()` (called by the monitor's greenlet about
once a second) sends one INSERT per table. When ClickHouse is unreachable the rows stay in
memory up to `max_rows`, then go to a JSONL spill file; when it answers again the spill file is
replayed first, then memory, in order. A run never stops because its ClickHouse is down.

An outage is logged as one line when it starts, a reminder at most every REMIND_EVERY seconds,
and one line when ClickHouse is back, with the outage's length and the rows spilled and replayed.
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections import OrderedDict
from pathlib import Path

from monitors import schema
from plumbing import chclient, settings
from plumbing.redaction import redact

log = logging.getLogger("monitors.sink")

REMIND_EVERY = 30.0  # seconds between "still unreachable" lines during an outage


class Sink:
    def __init__(self, url: str, database: str = settings.MONITOR_DATABASE.default, spill_dir: Path | str | None = None,
                 name: str = "monitor", max_rows: int = 100_000, retry_interval: float = 2.0,
                 remind_every: float = REMIND_EVERY) -> None:
        """`spill_dir` holds `<name>.spill.jsonl` files; every file there is replayed once ClickHouse answers,
        so rows spilled by an earlier run are written by the next one that reaches it."""
        schema.check_database_name(database)
        chclient.parse_url(url)  # a bad URL fails here, before the run
        self.url, self.database = url, database
        self.spill_dir = Path(spill_dir) if spill_dir else None
        self.spill_path = self.spill_dir / f"{name}.spill.jsonl" if self.spill_dir else None
        self.max_rows, self.retry_interval, self.remind_every = max_rows, retry_interval, remind_every
        self._pending: OrderedDict[str, list[dict]] = OrderedDict((t, []) for t in schema.COLUMNS)
        self._client = None
        self._ready = False
        self._next_try = 0.0
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
        self._pending[table].append(row)
        if self.pending_rows() > self.max_rows:
            self._spill()

    def pending_rows(self) -> int:
        return sum(len(rows) for rows in self._pending.values())

    def flush(self, force: bool = False) -> bool:
        """Write everything buffered; False (rows kept) if ClickHouse cannot be reached now."""
        if not force and time.monotonic() < self._next_try:
            return False
        buffered = 0
        try:
            client = self._connect()
            self._replay_spill(client)
            for table, rows in self._pending.items():
                if rows:
                    self._insert(client, table, rows)
                    buffered += len(rows)
                    self._pending[table] = []
        except Exception as exc:  # noqa: BLE001 - any failure means "keep the rows, retry later"
            self._failed(exc)
            return False
        if self._down_since is not None:
            log.warning("ClickHouse %s is back after %.1f s: %d rows spilled to disk and %d replayed, "
                        "%d buffered rows written", redact(self.url), time.monotonic() - self._down_since,
                        self.spilled - self._spilled_before, self.replayed - self._replayed_before, buffered)
            self._down_since = None
        self.failures = 0
        return True

    def close(self, timeout: float = 10.0) -> bool:
        """Flush, retrying for up to `timeout` s; then spill what is left. True if all written."""
        deadline = time.monotonic() + timeout
        while True:
            if self.flush(force=True):
                return True
            if time.monotonic() >= deadline:
                break
            time.sleep(min(self.retry_interval, max(0.0, deadline - time.monotonic())))
        self._spill()
        log.error("ClickHouse %s unreachable at exit (%s); %d rows kept in %s — they are written "
                  "on the next run that reaches it", redact(self.url), self.last_error,
                  self.spilled, self.spill_path)
        return False

    def query(self, sql: str, params: dict | None = None) -> list[tuple]:
        return self._connect().execute(sql, params or {})

    # -- internals --------------------------------------------------------------------------
    def _connect(self):
        if self._client is None:
            self._client = chclient.connect(self.url)
        if not self._ready:
            schema.ensure(self._client, self.database)
            self._ready = True
        return self._client

    def _insert(self, client, table: str, rows: list[dict]) -> None:
        client.execute(schema.insert_sql(table, self.database), [schema.to_tuple(table, r) for r in rows])
        self.written += len(rows)

    def _failed(self, exc: Exception) -> None:
        self.failures += 1
        self.last_error = f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"[:200]
        self._next_try = time.monotonic() + self.retry_interval
        if self._client is not None:
            try:
                self._client.disconnect()
            except Exception:  # noqa: BLE001
                pass
        self._ready = False
        now = time.monotonic()
        if self._down_since is None:
            self._down_since = self._reminded = now
            self._spilled_before, self._replayed_before = self.spilled, self.replayed
            log.warning("ClickHouse %s unreachable (%s); keeping rows in memory%s and retrying",
                        redact(self.url), self.last_error, f", then in {self.spill_path}" if self.spill_path else "")
        elif now - self._reminded >= self.remind_every:
            self._reminded = now
            log.warning("ClickHouse %s still unreachable after %.0f s (%s): %d rows in memory, %d spilled to disk",
                        redact(self.url), now - self._down_since, self.last_error, self.pending_rows(),
                        self.spilled - self._spilled_before)

    def _spill(self) -> None:
        if not self.spill_path or not self.pending_rows():
            return
        self.spill_path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.spill_path, "a") as f:
            for table, rows in self._pending.items():
                for row in rows:
                    f.write(json.dumps({"table": table, "database": self.database, "row": row}) + "\n")
                self.spilled += len(rows)
                self._pending[table] = []

    def _replay_spill(self, client) -> None:
        if not self.spill_dir or not self.spill_dir.is_dir():
            return
        for path in sorted(self.spill_dir.glob("*.spill.jsonl")):
            by_table: dict[tuple[str, str], list[dict]] = {}
            with open(path) as f:
                for line in f:
                    if line.strip():
                        item = json.loads(line)
                        by_table.setdefault((item["database"], item["table"]), []).append(item["row"])
            total = sum(map(len, by_table.values()))
            while by_table:
                (database, table), rows = next(iter(by_table.items()))
                if database != self.database:
                    schema.ensure(client, database)
                client.execute(schema.insert_sql(table, database), [schema.to_tuple(table, r) for r in rows])
                self.written += len(rows)
                self.replayed += len(rows)
                del by_table[(database, table)]
                # Rewrite what is left, so a failure on the next table never re-inserts this one.
                tmp = path.with_suffix(".tmp")
                with open(tmp, "w") as f:
                    for (db, t), rest in by_table.items():
                        for row in rest:
                            f.write(json.dumps({"table": t, "database": db, "row": row}) + "\n")
                os.replace(tmp, path)
            os.unlink(path)
            if self._down_since is None:  # rows of an earlier run; an outage's own are in its "back" line
                log.warning("replayed %d spilled rows from %s", total, path)
