"""Broker health from Mosquitto's `$SYS/#` topics, for the length of a run.

Every `$SYS` message is appended to `$LOCUST_RESULTS_DIR/mqtt-sys.jsonl` (the brief's "pipe
$SYS to a file"), and every --monitor-interval seconds the key figures — clients connected, messages
and bytes received/sent per second, the broker's own 1-minute load averages — become a monitor
sample under the key `mosquitto` (ClickHouse and samples.jsonl).
"""

from __future__ import annotations

import json
import time
from pathlib import Path

from plumbing import settings

FIGURES = {
    "$SYS/broker/clients/connected": "clients_connected",
    "$SYS/broker/clients/total": "clients_total",
    "$SYS/broker/messages/received": "messages_received",
    "$SYS/broker/messages/sent": "messages_sent",
    "$SYS/broker/bytes/received": "bytes_received",
    "$SYS/broker/bytes/sent": "bytes_sent",
    "$SYS/broker/publish/messages/dropped": "publish_dropped",
    "$SYS/broker/store/messages/count": "retained_or_stored",
    "$SYS/broker/load/messages/received/1min": "load_messages_received_1min",
    "$SYS/broker/load/messages/sent/1min": "load_messages_sent_1min",
    "$SYS/broker/load/connections/1min": "load_connections_1min",
    "$SYS/broker/heap/current": "heap_bytes",
}
RATES = ("messages_received", "messages_sent", "bytes_received", "bytes_sent")
BRIDGE_STATES = "$SYS/broker/connection/"


class SysRecorder:
    def __init__(self, results_dir: str | None = None) -> None:
        self.latest: dict[str, float] = {}
        self.messages = 0
        self._prev: dict[str, float] = {}
        self._prev_t = time.monotonic()
        path = Path(results_dir) / "mqtt-sys.jsonl" if results_dir else None
        self._file = open(path, "a") if path else None  # noqa: SIM115 - kept open for the run

    def on_message(self, msg) -> None:
        if msg.topic.startswith(BRIDGE_STATES):
            return  # one per (simulated) lamp bridge, retained: device state, not the broker's figures
        self.messages += 1
        text = msg.payload.decode(errors="replace")
        if self._file:
            self._file.write(json.dumps({"time": time.time(), "topic": msg.topic, "payload": text}) + "\n")
        key = FIGURES.get(msg.topic)
        if key:
            try:
                self.latest[key] = float(text.split()[0])
            except (ValueError, IndexError):
                pass

    def sample(self) -> dict:
        now = time.monotonic()
        out = dict(self.latest)
        dt = max(now - self._prev_t, 1e-6)
        for key in RATES:
            if key in self.latest and key in self._prev:
                out[f"{key}_per_s"] = round((self.latest[key] - self._prev[key]) / dt, 1)
        self._prev, self._prev_t = dict(self.latest), now
        if self._file:
            self._file.flush()
        return out

    def close(self) -> None:
        if self._file:
            self._file.close()


def results_dir() -> str | None:
    return settings.RESULTS_DIR.resolve() or None
