"""Consumers of the event-bus backends and the log tailer standing in for Vector.

- redis_bus: a consumer group on ``<prefix>-analytics`` (default group event_routing_backends),
  each instance under its own consumer name (Aspects gives every replica the same one); its
  own pending entries are read first, so a restart loses nothing; entries are acked once queued.
- kafka_bus: a consumer group on the topic, offsets committed after the events are queued.
- vector: tails a log file for ``[xapi_tracking]`` lines with Vector's Aspects regex and inserts
  the statements in batches (Vector's ClickHouse sink batches by itself; ERB is not involved);
  the read position is checkpointed after each insert, as Vector's data_dir does.
"""

from __future__ import annotations

import json
import logging
import os
import re
import signal
import socket
import threading
import time
from collections.abc import Callable
from pathlib import Path

from plumbing import kafka_conf
from targets.pipeline import decode
from targets.pipeline.router import Router, Store

log = logging.getLogger("pipeline")

# Vector's transform in TCA (partials/common-post.toml).
XAPI_LINE = re.compile(r"^.* \[xapi_tracking\] [^{}]* (?P<tracking_message>\{.*\})$")


# Once stopping, the process ends within this many seconds whatever it waits on (a ClickHouse or a
# Redis that stopped answering blocks a call for up to its socket timeout); what is in hand then is
# lost, as when Kubernetes kills a pod after its grace period.
STOP_GRACE = 5.0


def stop_event(grace: float = STOP_GRACE) -> threading.Event:
    """An Event set by SIGTERM or Ctrl-C; `grace` s later the process exits (code 143) if it is still running."""
    stop = threading.Event()

    def stopping(signum, _frame) -> None:
        if stop.is_set():
            return
        stop.set()
        watchdog = threading.Timer(grace, _exit_late, (grace,))
        watchdog.daemon = True
        watchdog.start()

    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, stopping)
    return stop


def _exit_late(grace: float) -> None:
    log.error("still stopping %.0f s after the signal (a call on a server that does not answer); exiting", grace)
    logging.shutdown()
    os._exit(128 + signal.SIGTERM)


def create_redis_group(url: str, stream: str, group: str) -> None:
    """The consumer group, reading from the stream's start (it may exist already)."""
    import redis

    r = redis.Redis.from_url(url)
    try:
        r.xgroup_create(stream, group, id="0", mkstream=True)
    except redis.ResponseError as exc:
        if "BUSYGROUP" not in str(exc):
            raise
    finally:
        r.close()


def run_redis_bus(router: Router, url: str, stream: str, group: str, stop: threading.Event, block_ms: int = 500) -> None:
    import redis

    create_redis_group(url, stream, group)
    r = redis.Redis.from_url(url)
    consumer = f"{socket.gethostname()}-{os.getpid()}"
    start_id = "0"  # first our own pending entries (a restart), then new ones
    while not stop.is_set():
        resp = r.xreadgroup(group, consumer, {stream: start_id}, count=500, block=None if start_id == "0" else block_ms)
        entries = resp[0][1] if resp else []
        if start_id == "0" and not entries:
            start_id = ">"
            continue
        events, ids = [], []
        for msg_id, fields in entries:
            ids.append(msg_id)
            try:
                events.append(decode.tracking_event(fields[b"event_data"]))
            except Exception as exc:  # noqa: BLE001 - an unusable message is logged and acked, like event-bus-redis
                log.warning("unusable stream entry %s: %s", msg_id, exc)
        router.queue_events(events)
        if ids:
            r.xack(stream, group, *ids)


def run_kafka_bus(router: Router, conf: dict, topic: str, group: str, stop: threading.Event,
                  assigned: Callable[[], None] | None = None) -> None:
    """Consume `topic` in `group` until `stop`; `assigned` is called at each assignment (the group
    rebalanced and this member has its partitions, maybe none), after it is logged."""
    from confluent_kafka import Consumer, KafkaException

    consumer = Consumer({**kafka_conf.READER_DEFAULTS, **conf, "group.id": group, "enable.auto.commit": False,
                         "auto.offset.reset": "earliest"})

    def on_assign(_consumer, partitions) -> None:
        # A rebalance stops the whole group's consumption (eager protocol): each is worth a line.
        log.info("assigned %s", ",".join(str(tp.partition) for tp in partitions) or "no partition")
        if assigned is not None:
            assigned()

    def on_revoke(_consumer, partitions) -> None:
        log.info("revoked %s (rebalance)", ",".join(str(tp.partition) for tp in partitions) or "no partition")

    consumer.subscribe([topic], on_assign=on_assign, on_revoke=on_revoke)
    try:
        while not stop.is_set():
            msgs = consumer.consume(num_messages=500, timeout=0.5)
            events = []
            for m in msgs:
                if m.error():
                    log.warning("consumer: %s", m.error())
                    continue
                try:
                    events.append(decode.tracking_event(decode.confluent_payload(m.value())))
                except Exception as exc:  # noqa: BLE001
                    log.warning("unusable message at %s[%d]@%d: %s", m.topic(), m.partition(), m.offset(), exc)
            router.queue_events(events)
            if any(m.error() is None for m in msgs):  # not for errors alone: no position moved
                try:
                    consumer.commit(asynchronous=False)
                except KafkaException as exc:
                    log.warning("commit: %s", exc)
    finally:
        consumer.close()


class VectorCounters:
    """The two sink counters the monitor reads from a real Vector, served in Prometheus text."""

    def __init__(self, component: str = "clickhouse_xapi") -> None:
        self.component, self.received, self.sent = component, 0, 0

    def exposition(self) -> bytes:
        labels = f'component_id="{self.component}",component_kind="sink",component_type="clickhouse"'
        return (f"# TYPE component_received_events_total counter\n"
                f"component_received_events_total{{{labels}}} {self.received}\n"
                f"# TYPE component_sent_events_total counter\n"
                f"component_sent_events_total{{{labels}}} {self.sent}\n").encode()

    def serve(self, port: int) -> None:
        from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

        counters = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):  # noqa: N802 - http.server's name
                body = counters.exposition()
                self.send_response(200)
                self.send_header("Content-Type", "text/plain; version=0.0.4")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *_a):
                pass

        server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
        threading.Thread(target=server.serve_forever, daemon=True).start()


def run_vector(store: Store, path: Path, checkpoint: Path, batch_size: int, batch_interval: float,
               stop: threading.Event, counters: VectorCounters | None = None) -> None:
    counters = counters or VectorCounters()
    offset = int(checkpoint.read_text()) if checkpoint.exists() else 0
    pending: list[dict] = []
    pending_end = offset
    first_at = None
    buf = b""
    while not stop.is_set():
        got = False
        if path.exists():
            if path.stat().st_size < offset:  # truncated or rotated: start over
                offset = pending_end = 0
                buf = b""
            with open(path, "rb") as f:
                f.seek(offset)
                chunk = f.read(4 << 20)
            if chunk:
                got = True
                offset += len(chunk)
                buf += chunk
                *lines, buf = buf.split(b"\n")
                for line in lines:
                    m = XAPI_LINE.match(line.decode(errors="replace"))
                    if not m:
                        continue  # Vector aborts non-matching lines (drop_on_abort)
                    try:
                        pending.append(json.loads(m.group("tracking_message")))
                    except ValueError:
                        continue
                    counters.received += 1
                    if first_at is None:
                        first_at = time.monotonic()
                pending_end = offset - len(buf)
        due = first_at is not None and time.monotonic() - first_at >= batch_interval
        if pending and (len(pending) >= batch_size or due):
            for i in range(0, len(pending), batch_size):
                store.insert(pending[i:i + batch_size], stop)
            counters.sent += len(pending)
            pending, first_at = [], None
            checkpoint.write_text(str(pending_end))
        if not got:
            stop.wait(0.05)
    if pending:
        try:
            store.insert(pending, stop)
        except Exception as exc:  # noqa: BLE001 - not lost: read again from the checkpoint at the next start
            log.error("stopping: %d statements not inserted (%s); read again at the next start", len(pending), exc)
            return
        counters.sent += len(pending)
        checkpoint.write_text(str(pending_end))
