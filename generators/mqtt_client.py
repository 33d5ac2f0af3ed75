"""paho-mqtt 2.x clients driven by gevent, for thousands of devices per process.

paho's own loop calls select(), which stops working near 1,024 sockets, and loop_start() gives
every client a thread. Here each client gets one small greenlet that waits on its socket with an
io watcher of gevent's hub (epoll, no descriptor limit) and calls paho's loop_read/loop_write/loop_misc. Every
publish is a Locust request: QoS 1/2 timed to PUBACK/PUBCOMP, QoS 0 ("PUB0") to the socket write.
Connects wait for CONNACK on an event, with a timeout; disconnects, reconnects and refused
publishes are reported.
"""

from __future__ import annotations

import json
import logging
import ssl
import time
from dataclasses import dataclass

import gevent
import gevent.event
import gevent.socket
import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from plumbing.backoff import jittered

log = logging.getLogger("locustfiles.mqtt")

PAHO_MAX_INFLIGHT = 65_535  # paho refuses more messages in flight (16-bit message ids)


@dataclass
class Settings:
    host: str
    port: int
    username: str | None = None
    password: str | None = None
    tls: bool = False
    ca_file: str | None = None
    insecure: bool = False
    keepalive: int = 60
    connect_timeout: float = 10.0
    max_inflight: int = 20
    max_queued: int = 1000
    reconnect_min: float = 1.0
    reconnect_max: float = 30.0


def request_type(qos: int) -> str:
    return "PUB0" if qos == 0 else f"PUB{qos}"


class Device:
    """One MQTT client with its driver greenlet; `fire` is Locust's request event."""

    def __init__(self, client_id: str, settings: Settings, fire, will: tuple[str, bytes, int, bool] | None = None):
        self.s, self.fire = settings, fire
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id, clean_session=True,
                                  reconnect_on_failure=False)
        self.client.max_inflight_messages_set(min(settings.max_inflight, PAHO_MAX_INFLIGHT))
        self.client.max_queued_messages_set(settings.max_queued)
        if settings.username:
            self.client.username_pw_set(settings.username, settings.password)
        if settings.tls:
            ctx = ssl.create_default_context(cafile=settings.ca_file)
            if settings.insecure:
                ctx.check_hostname = False
                ctx.verify_mode = ssl.CERT_NONE
            self.client.tls_set_context(ctx)
        if will:
            self.client.will_set(*will)
        self.client.on_connect = self._on_connect
        self.client.on_disconnect = self._on_disconnect
        # on_publish is set only while messages wait in `pending` (_track): paho builds a ReasonCode
        # and a Properties for every call, ~9 µs, a third of a QoS 0 publish written at once.
        self.connected = gevent.event.Event()
        self.connack_reason: str | None = None
        # mid -> name, qos, t0, wall, size, request context (open model: the planned instant)
        self.pending: dict[int, tuple[str, int, float, float, int, dict]] = {}
        self.running = True
        self.reconnects = 0
        self.on_reconnect = None
        self._was_connected = False
        self.driver: gevent.Greenlet | None = None
        self._loop = gevent.get_hub().loop
        self._settled: gevent.event.Event | None = None  # set by close() to wait for the last acks

    # -- connection ----------------------------------------------------------------------------
    def connect(self) -> bool:
        """Connect and wait for CONNACK; reported as a CONNECT request. True when accepted."""
        t0, wall = time.perf_counter(), time.time()
        try:
            self.client.connect(self.s.host, self.s.port, keepalive=self.s.keepalive)
        except (OSError, ValueError) as exc:
            self._fire("CONNECT", "connect", t0, wall, 0, exc)
            return False
        if self.driver is None:
            self.driver = gevent.spawn(self._drive)
        if not self.connected.wait(self.s.connect_timeout):
            self._fire("CONNECT", "connect", t0, wall, 0,
                       TimeoutError(f"no CONNACK within {self.s.connect_timeout:g} s"))
            return False
        if self.connack_reason:
            self._fire("CONNECT", "connect", t0, wall, 0, ConnectionRefusedError(self.connack_reason))
            return False
        self._fire("CONNECT", "connect", t0, wall, 0, None)
        return True

    def _on_connect(self, client, userdata, flags, reason_code, properties) -> None:
        self.connack_reason = None if not reason_code.is_failure else str(reason_code)
        self._was_connected = not reason_code.is_failure
        self.connected.set()

    def _on_disconnect(self, client, userdata, flags, reason_code, properties) -> None:
        self.connected.clear()
        if self.running and self._was_connected:
            self.fire(request_type="DISCONNECT", name="disconnect", response_time=0, response_length=0,
                      exception=ConnectionError(f"disconnected: {reason_code}"), context={})
        self._was_connected = False
        # Messages that were in flight get no PUBACK now: report them as failed, not as lost silently.
        self._fail_pending("disconnected before PUBACK")
        if self._settled is not None:
            self._settled.set()

    def _fail_pending(self, why: str) -> None:
        """Report every message still in flight as a failed request (`why`) and forget it."""
        for _mid, (name, qos, t0, wall, size, context) in list(self.pending.items()):
            self._fire(request_type(qos), name, t0, wall, size, ConnectionError(why), context)
        self.pending.clear()
        self.client.on_publish = None

    def _drive(self) -> None:
        """Serve the socket: read when readable, write when paho has data, keepalive each second."""
        backoff = self.s.reconnect_min
        last_misc = 0.0
        while self.running:
            sock = self.client.socket()
            if sock is None:  # disconnected: reconnect with back-off
                if not self.running:
                    return
                gevent.sleep(jittered(backoff))  # devices dropped together must not retry together
                backoff = min(backoff * 2, self.s.reconnect_max)
                t0, wall = time.perf_counter(), time.time()
                try:
                    self.client.reconnect()
                except (OSError, ValueError) as exc:
                    self._fire("CONNECT", "reconnect", t0, wall, 0, exc)
                    continue
                gevent.spawn(self._await_reconnect, t0, wall)
                continue
            backoff = self.s.reconnect_min
            # Wait on the hub's epoll, not select(): select() (even gevent's, which tries the real one
            # first) fails for descriptors above 1,023. Reads and writes are non-blocking: a spurious
            # wake-up costs one EAGAIN.
            watcher = self._loop.io(sock.fileno(), 1 | (2 if self.client.want_write() else 0))
            try:
                gevent.socket.wait(watcher, timeout=1.0)
            except TimeoutError:
                pass
            finally:
                watcher.close()
            if self.client.socket() is not None:
                self.client.loop_read(max_packets=100)
            if self.client.want_write():
                self.client.loop_write()
            now = time.monotonic()
            if now - last_misc >= 1.0:
                self.client.loop_misc()
                last_misc = now

    def _await_reconnect(self, t0: float, wall: float) -> None:
        ok = self.connected.wait(self.s.connect_timeout) and not self.connack_reason
        self._fire("CONNECT", "reconnect", t0, wall, 0,
                   None if ok else TimeoutError("no CONNACK after reconnect") if not self.connack_reason
                   else ConnectionRefusedError(self.connack_reason))
        if ok:
            self.reconnects += 1
            if self.on_reconnect:
                self.on_reconnect()

    # -- publishing ----------------------------------------------------------------------------
    def publish(self, topic: str, name: str, payload: bytes, qos: int, retain: bool, context: dict | None = None) -> None:
        t0, wall = time.perf_counter(), time.time()
        info = self.client.publish(topic, payload, qos=qos, retain=retain)
        if info.rc != mqtt.MQTT_ERR_SUCCESS:
            why = {mqtt.MQTT_ERR_QUEUE_SIZE: "outgoing queue full (--mqtt-max-queued)",
                   mqtt.MQTT_ERR_NO_CONN: "not connected"}.get(info.rc, mqtt.error_string(info.rc))
            self._fire(request_type(qos), name, t0, wall, len(payload), RuntimeError(why), context)
            return
        if info.is_published():
            # QoS 0 written at once (paho marked it published inside publish()): done.
            self._fire(request_type(qos), name, t0, wall, len(payload), None, context)
            return
        self._track(info.mid, (name, qos, t0, wall, len(payload), context))
        if self.client.want_write():
            self.client.loop_write()  # send now; the driver finishes a partial write

    def _track(self, mid: int, entry: tuple) -> None:
        """Wait for message `mid`'s PUBACK/PUBCOMP (or, at QoS 0, the end of its write)."""
        if not self.pending:
            # Before anything can write or read for it: paho calls on_publish only from loop_write and
            # loop_read, which run in this greenlet (publish) or the driver, after this returns.
            self.client.on_publish = self._on_publish
        self.pending[mid] = entry

    def _on_publish(self, client, userdata, mid, reason_code, properties) -> None:
        entry = self.pending.pop(mid, None)
        if entry is None:
            return
        if not self.pending:
            self.client.on_publish = None
        name, qos, t0, wall, size, context = entry
        failed = reason_code is not None and getattr(reason_code, "is_failure", False)
        self._fire(request_type(qos), name, t0, wall, size, RuntimeError(str(reason_code)) if failed else None,
                   context)
        if self._settled is not None and not self.pending:
            self._settled.set()

    def _fire(self, rtype: str, name: str, t0: float, wall: float, size: int, exc, context: dict | None = None) -> None:
        self.fire(request_type=rtype, name=name, response_time=(time.perf_counter() - t0) * 1000,
                  response_length=size, exception=exc, context=context or {}, start_time=wall)

    def close(self) -> None:
        """Disconnect, after the acks of messages still in flight (at most `connect_timeout` s).

        A run that stops mid-publish would otherwise report its last messages as failed
        ("disconnected before PUBACK") though the broker was about to acknowledge them.
        """
        try:
            if self.pending and self.connected.is_set():
                self._settled = gevent.event.Event()
                self._settled.wait(self.s.connect_timeout)
        except BaseException:
            # Killed while waiting (Locust kills users still in on_stop once --stop-timeout, 0 by
            # default, runs out): the messages in flight are counted as failed, not lost.
            self._fail_pending("the run stopped before PUBACK")
            raise
        finally:
            self.running = False
            try:
                self.client.disconnect()
                self.client.loop_write()
            except Exception:  # noqa: BLE001 - closing anyway
                pass
            if self.driver is not None:
                self.driver.kill(block=False)


def subscriber(client_id: str, settings: Settings, topics: list[tuple[str, int]], on_message) -> Device:
    """A client that subscribes to `topics` (after each connect) and hands messages to `on_message`."""
    dev = Device(client_id, settings, fire=lambda **_kw: None)

    def resubscribe() -> None:
        dev.client.subscribe(topics)

    dev.client.on_message = lambda client, userdata, msg: on_message(msg)
    dev.on_reconnect = resubscribe
    if dev.connect():
        resubscribe()
    return dev


def parse_payload(payload: bytes) -> dict | None:
    try:
        value = json.loads(payload)
    except ValueError:
        return None
    return value if isinstance(value, dict) else None
