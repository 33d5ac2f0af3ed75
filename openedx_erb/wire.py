"""Wire formats where tracking events enter an Open edX pipeline, byte for byte.

- celery: the Celery (protocol 2, JSON) message of task ``eventtracking.tasks.send_event``
  as kombu's Redis transport stores it in the queue's list;
- redis_bus: the stream entry event-bus-redis writes — CloudEvent headers plus ``event_data``,
  the Avro encoding of openedx-events' TrackingLogData signal data;
- kafka_bus: event-bus-kafka's message — the same Avro data in Confluent's wire format
  (magic byte, schema id) with ``ce_*`` headers;
- vector: log lines in the formatter layout that Vector's Aspects configuration parses.

Encoding is done here, by hand, because it is the generator's hot path; the tests decode every
format with the libraries the real consumers use (Celery, openedx-events).
"""

from __future__ import annotations

import base64
import json
import os
import random
import socket
import struct
import time
import uuid
from datetime import UTC, datetime
from typing import NamedTuple

SIGNAL_TYPE = "org.openedx.analytics.tracking.event.emitted.v1"
TASK = "eventtracking.tasks.send_event"
SOURCELIB = "10.5.0"  # openedx-events version a current LMS reports
# The signal's Avro schema exactly as openedx-events generates it (AvroSignalSerializer(TRACKING_EVENT_EMITTED)).
TRACKING_SCHEMA = {
    "name": "CloudEvent", "type": "record",
    "doc": "Avro Event Format for CloudEvents created with openedx_events/schema",
    "fields": [{"name": "tracking_log", "type": {"name": "TrackingLogData", "type": "record", "fields": [
        {"name": "name", "type": "string"}, {"name": "timestamp", "type": "string"},
        {"name": "data", "type": "string"}, {"name": "context", "type": "string"}]}}],
    "namespace": SIGNAL_TYPE,
}
KEY_SCHEMA = {"name": "name", "type": "string"}  # event-bus-kafka's key sub-schema for tracking_log.name
HOST = socket.gethostname()
ORIGIN = f"gen{os.getpid()}@{HOST}"


_ENCODE = json.JSONEncoder(separators=(",", ":")).encode  # json.dumps() builds an encoder per call with these


def _json(obj) -> str:
    return _ENCODE(obj)


compact_json = _json  # json.dumps(obj, separators=(",", ":")): the form of TrackingLogData's data and context


class TrackingLog(NamedTuple):
    """An event as the event bus carries it (openedx-events' TrackingLogData: its data and context as
    compact JSON text) and the username that keys it. `tracking_log(event)` encodes an event dict;
    `EventFactory.next_tracking_log` makes one without building the dicts."""

    name: str
    timestamp: str
    data: str
    context: str
    username: str


def tracking_log(event: dict | TrackingLog) -> TrackingLog:
    if isinstance(event, TrackingLog):
        return event
    return TrackingLog(event["name"], event["timestamp"], _ENCODE(event["data"]), _ENCODE(event["context"]),
                       event["context"].get("username", ""))


def iso_utc(us: int) -> str:
    """`datetime.fromtimestamp(us / 1e6, UTC).isoformat()` (a zero fraction dropped, as Open edX writes
    it), the date and time formatted once per second."""
    sec, frac = divmod(us, 1_000_000)
    if sec != _ISO_SECOND[0]:
        _ISO_SECOND[:] = [sec, datetime.fromtimestamp(sec, UTC).strftime("%Y-%m-%dT%H:%M:%S")]
    return f"{_ISO_SECOND[1]}.{frac:06d}+00:00" if frac else f"{_ISO_SECOND[1]}+00:00"


_ISO_SECOND: list = [None, ""]


# -- Avro ---------------------------------------------------------------------------------------
def _avro_long(n: int) -> bytes:
    if 0 <= n < 8192:  # a length: one or two bytes (zigzag 2n), the hot path
        return _AVRO_SMALL[n] if n < 64 else bytes((((n << 1) & 0x7F) | 0x80, n >> 6))
    return _avro_long_any(n)


def _avro_long_any(n: int) -> bytes:
    n = (n << 1) ^ (n >> 63)  # zigzag
    out = bytearray()
    while n & ~0x7F:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


_AVRO_SMALL = [bytes((n << 1,)) for n in range(64)]


def avro_string(text: str) -> bytes:
    raw = text.encode()
    return _avro_long(len(raw)) + raw


def tracking_log_avro(event: dict | TrackingLog, head: bytes = b"") -> bytes:
    """TrackingLogData(name, timestamp, data=json string, context=json string), Avro binary, after `head`
    (e.g. Confluent's framing: one join, not a second copy of the value to prepend it)."""
    t = tracking_log(event)
    name, stamp, data, context = t.name.encode(), t.timestamp.encode(), t.data.encode(), t.context.encode()
    return b"".join((head, _avro_long(len(name)), name, _avro_long(len(stamp)), stamp, _avro_long(len(data)), data,
                     _avro_long(len(context)), context))


def confluent_wire(schema_id: int, payload: bytes) -> bytes:
    """Confluent Schema Registry framing: magic byte 0, 4-byte schema id, Avro binary."""
    return b"\x00" + struct.pack(">I", schema_id) + payload


# -- CloudEvent metadata (openedx-events EventsMetadata as headers) -----------------------------
def _id_fields() -> tuple[int, int]:
    # uuid1() without arguments asks libuuid, which locks and rewrites its clock file per id (~11 µs);
    # with a node and clock sequence it takes the standard library's own path (~3 µs). The node is a
    # random one with the multicast bit set (RFC 4122 4.5), one per process: forked generators differ.
    return random.getrandbits(48) | (1 << 40), random.getrandbits(14)


_ID_NODE, _ID_SEQ = _id_fields()


def _reseed_ids() -> None:
    global _ID_NODE, _ID_SEQ, _UUID_TAIL
    _ID_NODE, _ID_SEQ = _id_fields()
    _UUID_TAIL = _uuid_tail()


os.register_at_fork(after_in_child=_reseed_ids)


def metadata(source: str) -> dict[str, str]:
    return {
        "type": SIGNAL_TYPE,
        "id": str(uuid.uuid1(_ID_NODE, _ID_SEQ)),  # a version-1 UUID, as EventsMetadata's uuid1()
        "source": source,
        "time": datetime.now(UTC).isoformat(),
        "minorversion": "0",
        "sourcehost": HOST,
        "sourcelib": SOURCELIB,
    }


def _id_and_time() -> tuple[bytes, bytes]:
    """A version-1 UUID (uuid.uuid1(node, clock_seq)'s fields, formatted as str(UUID)) and the time, now
    (iso_utc's form, made as bytes: the date and time formatted once per second)."""
    ns = time.time_ns()
    ts = ns // 100 + 0x01B21DD213814000  # 100 ns intervals since 1582-10-15, as uuid1
    last = _LAST_TS
    if ts <= last[0]:
        ts = last[0] + 1  # as uuid1: never the same timestamp twice in this process
    last[0] = ts
    uid = b"%08x-%04x-%04x-%b" % (ts & 0xFFFFFFFF, (ts >> 32) & 0xFFFF, ((ts >> 48) & 0x0FFF) | 0x1000, _UUID_TAIL)
    sec, frac = divmod(ns // 1000, 1_000_000)
    second = _ISO_SECOND_B
    if sec != second[0]:
        second[:] = [sec, datetime.fromtimestamp(sec, UTC).strftime("%Y-%m-%dT%H:%M:%S").encode()]
    return uid, b"%b.%06d+00:00" % (second[1], frac) if frac else second[1] + b"+00:00"


_LAST_TS = [0]
_ISO_SECOND_B: list = [None, b""]


def _uuid_tail() -> bytes:
    """The clock sequence (with the RFC 4122 variant) and node of this process's ids, formatted once
    (and again in a forked child)."""
    return b"%02x%02x-%012x" % (((_ID_SEQ >> 8) & 0x3F) | 0x80, _ID_SEQ & 0xFF, _ID_NODE)


_UUID_TAIL = _uuid_tail()


def redis_bus_fields(event: dict | TrackingLog, source: str = "openedx/lms/web") -> dict[str, bytes]:
    """Fields of the stream entry (XADD) that event-bus-redis's consumer parses (metadata()'s, encoded;
    all but the id and time encoded once per source)."""
    event_id, now = _id_and_time()
    sourceb, hostb, libb = _constants(source)
    return {"type": _SIGNAL_TYPE_B, "id": event_id, "source": sourceb, "time": now, "minorversion": b"0",
            "sourcehost": hostb, "sourcelib": libb, "event_data": tracking_log_avro(event)}


def kafka_headers(source: str = "openedx/lms/web") -> list[tuple[str, bytes]]:
    """event-bus-kafka's headers: CloudEvent attributes prefixed `ce_`, plus content type."""
    fixed = _KAFKA_FIXED.get(source)
    if fixed is None:
        sourceb, hostb, libb = _constants(source)
        fixed = _KAFKA_FIXED[source] = (("ce_type", _SIGNAL_TYPE_B), ("ce_source", sourceb), ("ce_minorversion", b"0"),
                                        ("sourcehost", hostb), ("sourcelib", libb), ("ce_specversion", b"1.0"),
                                        ("content-type", b"application/avro"))
    # The seven constant headers are the same tuples in every message; only ce_id and ce_time are new.
    ce_type, ce_source, minor, host, lib, spec, content = fixed
    event_id, now = _id_and_time()
    return [ce_type, ("ce_id", event_id), ce_source, ("ce_time", now), minor, host, lib, spec, content]


_KAFKA_FIXED: dict[str, tuple] = {}  # per source: the headers that are the same in every message


_SIGNAL_TYPE_B = SIGNAL_TYPE.encode()
_CONSTANTS: dict[str, tuple[bytes, bytes, bytes]] = {}


def _constants(source: str) -> tuple[bytes, bytes, bytes]:
    c = _CONSTANTS.get(source)
    if c is None:
        c = _CONSTANTS[source] = (source.encode(), HOST.encode(), SOURCELIB.encode())
    return c


# -- Celery ---------------------------------------------------------------------------------------
def celery_message(args: list, queue: str, task: str = TASK) -> bytes:
    """A Celery protocol-2 task message as kombu's Redis transport LPUSHes it."""
    task_id = str(uuid.uuid4())
    body = _json([args, {}, {"callbacks": None, "errbacks": None, "chain": None, "chord": None}])
    message = {
        "body": base64.b64encode(body.encode()).decode(),
        "content-encoding": "utf-8",
        "content-type": "application/json",
        "headers": {
            "lang": "py", "task": task, "id": task_id, "shadow": None, "eta": None, "expires": None,
            "group": None, "group_index": None, "retries": 0, "timelimit": [None, None], "root_id": task_id,
            "parent_id": None, "argsrepr": repr(args)[:1024], "kwargsrepr": "{}", "origin": ORIGIN,
            "ignore_result": False,
        },
        "properties": {
            "correlation_id": task_id, "reply_to": "", "delivery_mode": 2,
            "delivery_info": {"exchange": "", "routing_key": queue}, "priority": 0,
            "body_encoding": "base64", "delivery_tag": str(uuid.uuid4()),
        },
    }
    return _json(message).encode()


# -- Vector ---------------------------------------------------------------------------------------
def log_line(logger: str, message: dict, filename: str) -> str:
    """edx-platform's `standard` formatter layout, which Vector's `[xapi_tracking]`/`[tracking]` regexes accept."""
    now = datetime.now(UTC)
    stamp = now.strftime("%Y-%m-%d %H:%M:%S") + f",{now.microsecond // 1000:03d}"
    return f"{stamp} INFO {os.getpid()} [{logger}] [user None] [ip None] {filename} - {_json(message)}\n"


def tracking_line(event: dict) -> str:
    """The legacy tracking-log line (`[tracking]`): eventtracking's shim moves fields to the top level."""
    ctx = event["context"]
    legacy = {"name": event["name"], "context": ctx, "username": ctx.get("username", ""),
              "session": ctx.get("session", ""), "ip": ctx.get("ip", ""), "agent": ctx.get("agent", ""),
              "host": ctx.get("host", ""), "referer": ctx.get("referer", ""),
              "accept_language": ctx.get("accept_language", ""), "event": event["data"], "time": event["timestamp"],
              "event_type": event["name"], "event_source": ctx.get("event_source", "server"),
              "page": ctx.get("page")}
    return log_line("tracking", legacy, "logger.py:41")


def xapi_line(statement: dict) -> str:
    return log_line("xapi_tracking", statement, "transformer_processor.py:45")
