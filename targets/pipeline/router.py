"""ERB's batching ("this many or this long") in Redis, then ERB's xAPI statements into ClickHouse.

As in event-routing-backends, raw events wait in the Redis list ``events_router_queue_xapi``
and a batch is popped when it holds --batch-size events or --batch-interval seconds passed since
the last flush; a failed insert goes to ``dead_queue_xapi``. Unlike ERB, a timer thread also
flushes, so the last partial batch of a test never waits for an event that is not coming.
Several workers share the list: RPOP with a count hands each event to exactly one batch.
Statements are the real event-routing-backends' (openedx_erb): ids, verbs and bodies as the LMS's.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import redis

import openedx_erb
from plumbing import chclient, settings

log = logging.getLogger("pipeline")
DDL = Path(__file__).resolve().parents[2] / "conf" / "clickhouse" / "xapi.sql"


def ddl_statements(database: str = settings.XAPI_DATABASE.default, table: str = settings.XAPI_TABLE.default) -> list[str]:
    text = DDL.read_text().format(db=database, table=table)
    body = "\n".join(line for line in text.splitlines() if not line.lstrip().startswith("--"))
    return [s.strip() for s in body.split(";") if s.strip()]


def emission_time(timestamp: str) -> datetime:
    return datetime.fromisoformat(timestamp.replace("Z", "+00:00")).astimezone(UTC)


@dataclass
class Store:
    """Inserts statements into the xAPI table, retrying a dead ClickHouse before giving up a batch."""

    url: str
    database: str = settings.XAPI_DATABASE.default
    table: str = settings.XAPI_TABLE.default
    attempts: int = 5
    _local: threading.local = field(default_factory=threading.local)

    def ensure_table(self) -> None:
        client = chclient.connect(self.url)
        for statement in ddl_statements(self.database, self.table):
            client.execute(statement)
        client.disconnect()

    def insert(self, statements: list[dict], stop: threading.Event | None = None) -> None:
        """Insert, retrying a failed attempt with growing pauses; once `stop` is set (the pipeline
        stops) no further attempt is made: the last error is raised at once."""
        rows = [(s["id"], emission_time(s["timestamp"]), json.dumps(s, separators=(",", ":"))) for s in statements]
        stop = stop or threading.Event()
        delay = 0.5
        for attempt in range(1, self.attempts + 1):
            try:
                client = getattr(self._local, "client", None) or chclient.connect(self.url)
                self._local.client = client
                client.execute(f"INSERT INTO {self.database}.{self.table} (event_id, emission_time, event) VALUES",
                               rows)
                return
            except Exception as exc:  # noqa: BLE001 - retried, then reported by the caller
                self._local.client = None
                if attempt == self.attempts or stop.is_set():
                    raise
                log.warning("insert of %d statements failed (%s); retry %d in %.1f s", len(rows), exc, attempt, delay)
                if stop.wait(delay):
                    raise
                delay = min(delay * 2, 10)


@dataclass
class Router:
    redis_url: str
    store: Store
    batch_size: int = 100
    batch_interval: float = 5.0
    backend_name: str = "xapi"
    flushed: int = 0
    # Set when the pipeline stops (SIGTERM): retries end, and a batch that fails then goes back to
    # the list for the next start instead of waiting on a dead ClickHouse (consumers.stop_event).
    stopping: threading.Event = field(default_factory=threading.Event)
    _redis: redis.Redis | None = None
    _timer: threading.Thread | None = None

    @property
    def queue(self) -> str:
        return f"events_router_queue_{self.backend_name}"

    @property
    def dead_queue(self) -> str:
        return f"dead_queue_{self.backend_name}"

    @property
    def last_sent_key(self) -> str:
        return f"last_sent_{self.backend_name}"

    def __post_init__(self) -> None:
        openedx_erb.setup()  # Django for ERB, once per process, before the first batch

    def r(self) -> redis.Redis:
        if self._redis is None:
            self._redis = redis.Redis.from_url(self.redis_url)
        return self._redis

    def start_timer(self) -> None:
        self._timer = threading.Thread(target=self._tick, name="batch-timer", daemon=True)
        self._timer.start()

    def stop(self) -> None:
        self.stopping.set()
        if self._timer is not None:
            self._timer.join(timeout=self.batch_interval + 5)
        self.flush()  # what is left goes now, not at some later event

    def queue_events(self, events: list[dict]) -> None:
        """Queue raw events; flush if the batch is full or the interval has passed (ERB's rule)."""
        if not events:
            return
        size = self.r().lpush(self.queue, *[json.dumps(e, separators=(",", ":")) for e in events])
        if size >= self.batch_size or self._interval_passed():
            self.flush()

    def _interval_passed(self) -> bool:
        last = self.r().get(self.last_sent_key)
        return last is None or time.time() - float(last) >= self.batch_interval

    def _tick(self) -> None:
        while not self.stopping.wait(min(self.batch_interval / 2, 1.0)):
            try:
                if self._interval_passed() and self.r().llen(self.queue):
                    self.flush()
            except Exception as exc:  # noqa: BLE001 - Redis away: the next tick tries again
                log.warning("batch timer: %s", exc)

    def flush(self) -> int:
        """Pop up to a batch (several if the list is long), transform, insert. Returns events flushed."""
        total = 0
        while True:
            raw = self.r().rpop(self.queue, self.batch_size)
            if not raw:
                break
            self.r().set(self.last_sent_key, time.time())
            statements, seen = [], set()
            for item in raw:
                try:
                    produced = openedx_erb.statements(json.loads(item))
                except (openedx_erb.NotTransformable, ValueError) as exc:
                    # ERB logs and skips an event it cannot transform; the rest of the batch goes on.
                    log.warning("dropping an event that cannot be transformed: %s", exc)
                    continue
                for st in produced:
                    if st["id"] in seen:  # ERB de-duplicates a batch by statement id
                        continue
                    seen.add(st["id"])
                    statements.append(st)
            try:
                if statements:
                    self.store.insert(statements, self.stopping)
            except Exception as exc:  # noqa: BLE001
                if self.stopping.is_set():  # not given up: back where it was popped, for the next start
                    log.error("stopping: batch of %d events left in %s (%s)", len(raw), self.queue, exc)
                    self.r().rpush(self.queue, *reversed(raw))
                    break
                log.error("batch of %d events to %s: %s", len(raw), self.dead_queue, exc)
                self.r().lpush(self.dead_queue, *raw)
                continue
            total += len(raw)
            self.flushed += len(raw)
            if len(raw) < self.batch_size:
                break
        return total
