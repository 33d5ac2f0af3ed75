"""The LAMPI devices' run (its entry point is locustfiles/mqtt.py): devices publishing to the MQTT
broker, per docs/mqtt-model.md.

Each Locust user is one LAMPI as the cloud broker sees it, i.e. its Mosquitto bridge (a random fake
device id per session, '%x' % (0x1e0000000000 + n)): it connects (CONNECT request, timed to
CONNACK) with the bridge's last will, announces itself as the bridge does (its bridge state, both
services' connection states, the lamp's current state), then interacts per the profile: bursts of
retained `lamp/changed` state updates. Requests are named by topic pattern; QoS 1 is timed to
PUBACK, QoS 0 ("PUB0") only to the socket write.
The broker's `$SYS/#` is recorded for the run; --mqtt-e2e also measures publish→delivery.

Here: the options (read here only: the devices get a `Settings` and a `Fleet`), the broker probed
before the run, the $SYS recorder and the end-to-end subscriber for the run's length.
"""

from __future__ import annotations

import os
import random
import resource
import time
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import gevent
from locust import events
from locust.runners import MasterRunner, WorkerRunner

import loadtesting.locust_plugin  # noqa: F401  - capacity search, sar capture, phases
import monitors.locust_plugin  # noqa: F401  - pipeline monitor, ClickHouse sink, thresholds
from generators import mqtt_model as model
from generators import open_model
from generators.mqtt_client import PAHO_MAX_INFLIGHT, Device, Settings, parse_payload, subscriber
from monitors import e2e
from monitors.locust_plugin import record_sample, sample_interval
from monitors.mqtt_sys import SysRecorder, results_dir
from plumbing import run_state
from plumbing.options import (
    OptionError,
    int_between,
    non_negative_float,
    non_negative_int,
    positive_float,
    positive_int,
    require,
)
from plumbing.redaction import redact, remember
from plumbing.web_options import per_test

# Thousands of sockets per process: lift the soft descriptor limit to the hard one.
_soft, _hard = resource.getrlimit(resource.RLIMIT_NOFILE)
if _soft < _hard:
    resource.setrlimit(resource.RLIMIT_NOFILE, (_hard, _hard))


@events.init_command_line_parser.add_listener
def _options(parser) -> None:
    g = parser.add_argument_group("LAMPI MQTT devices")
    g.add_argument("--mqtt-url", default=os.environ.get("LOCUST_MQTT_URL", "mqtt://127.0.0.1:1883"),
                   env_var="LOCUST_MQTT_URL", help="broker: mqtt://host:port or mqtts://host:port (default loopback)")
    g.add_argument("--mqtt-username", default=None, env_var="LOCUST_MQTT_USERNAME")
    g.add_argument("--mqtt-password-file", default=None, env_var="LOCUST_MQTT_PASSWORD_FILE",
                   help="file holding the password (or set LOCUST_MQTT_PASSWORD); never logged")
    g.add_argument("--mqtt-ca-file", default=None, env_var="LOCUST_MQTT_CA_FILE", help="CA file for mqtts://")
    g.add_argument("--mqtt-insecure", action="store_true", default=False, env_var="LOCUST_MQTT_INSECURE",
                   help="mqtts:// without certificate verification (test brokers only)")
    per_test(g.add_argument("--mqtt-profile", choices=sorted(model.PROFILES), default="worst", env_var="LOCUST_MQTT_PROFILE",
                   help="interaction profile from the model (default %(default)s: every user dragging a slider)"))
    g.add_argument("--fake-devices", type=positive_int, default=10_000, env_var="LOCUST_FAKE_DEVICES",
                   help="how many fake LAMPIs exist; each session picks one at random")
    g.add_argument("--first-fake-device", type=non_negative_int, default=0, env_var="LOCUST_FIRST_FAKE_DEVICE")
    g.add_argument("--mqtt-keepalive", type=non_negative_int, default=60, env_var="LOCUST_MQTT_KEEPALIVE")
    g.add_argument("--mqtt-connect-timeout", type=positive_float, default=10.0, env_var="LOCUST_MQTT_CONNECT_TIMEOUT",
                   help="seconds to wait for CONNACK, and at the end of a run for the acks still in flight "
                        "(default %(default)s)")
    g.add_argument("--mqtt-max-inflight", type=int_between(1, PAHO_MAX_INFLIGHT, "(paho's limit)"), default=20,
                   env_var="LOCUST_MQTT_MAX_INFLIGHT",
                   help=f"QoS>0 messages in flight per device (at most {PAHO_MAX_INFLIGHT})")
    g.add_argument("--mqtt-max-queued", type=non_negative_int, default=1000, env_var="LOCUST_MQTT_MAX_QUEUED",
                   help="messages queued per device beyond those in flight; more fail as 'queue full'")
    g.add_argument("--mqtt-e2e", action="store_true", default=False, env_var="LOCUST_MQTT_E2E",
                   help="subscribe to lamp/changed and report publish-to-delivery latency in an E2E row (outside Aggregated)")
    g.add_argument("--mqtt-no-sys", action="store_true", default=False, env_var="LOCUST_MQTT_NO_SYS",
                   help="do not record the broker's $SYS topics")
    per_test(g.add_argument("--mqtt-message-rate", type=non_negative_float, default=0.0, env_var="LOCUST_MQTT_MESSAGE_RATE",
                   help="open model: lamp/changed messages per second over all processes, each published at its "
                        "planned instant by a free connected device or dropped and counted (replaces the "
                        "profile's bursts and gaps; default 0: the profile; docs/open-model.md)"))


def settings_from(o) -> Settings:
    parts = urlsplit(o.mqtt_url)
    require(parts.scheme in ("mqtt", "mqtts") and bool(parts.hostname),
            f"--mqtt-url {o.mqtt_url!r}: expected mqtt://host:port or mqtts://host:port")
    try:
        port = parts.port or (8883 if parts.scheme == "mqtts" else 1883)
    except ValueError:
        raise OptionError(f"--mqtt-url {o.mqtt_url!r}: the port is not a number 1-65535") from None
    password = os.environ.get("LOCUST_MQTT_PASSWORD")
    if o.mqtt_password_file:
        try:
            password = Path(o.mqtt_password_file).read_text().strip()
        except OSError as exc:
            raise OptionError(f"--mqtt-password-file {o.mqtt_password_file!r} cannot be read: {exc.strerror}") \
                from None
    remember(password or parts.password)  # masked in anything logged from now on
    if o.mqtt_ca_file:
        import ssl

        try:  # the same load the devices do, once, so a bad file is one line and not a traceback per device
            ssl.create_default_context(cafile=o.mqtt_ca_file)
        except (OSError, ssl.SSLError) as exc:
            why = str(exc.reason or exc).lower().replace("_", " ") if isinstance(exc, ssl.SSLError) else exc.strerror
            raise OptionError(f"--mqtt-ca-file {o.mqtt_ca_file!r}: {why}; expected a readable PEM CA file") from None
    return Settings(host=parts.hostname, port=port, username=o.mqtt_username or parts.username,
                    password=password or parts.password, tls=parts.scheme == "mqtts", ca_file=o.mqtt_ca_file,
                    insecure=o.mqtt_insecure, keepalive=o.mqtt_keepalive, connect_timeout=o.mqtt_connect_timeout,
                    max_inflight=o.mqtt_max_inflight, max_queued=o.mqtt_max_queued)


@dataclass(frozen=True)
class Fleet:
    """The devices' part of the options, for each device user (set again at each test start: the web UI
    may change the profile)."""

    profile: model.Profile  # --mqtt-profile
    first: int  # --first-fake-device
    count: int  # --fake-devices
    e2e: bool  # --mqtt-e2e: stamp each lamp/changed for the end-to-end subscriber

    def pick(self) -> int:
        """A fake device's number, at random (two sessions may draw the same one)."""
        return random.randrange(self.first, self.first + self.count)


def fleet_from(o) -> Fleet:
    return Fleet(model.PROFILES[o.mqtt_profile], o.first_fake_device, o.fake_devices, o.mqtt_e2e)


@dataclass
class MqttRun:
    """This process's MQTT state for one run (plumbing.run_state)."""

    settings: Settings | None = None
    fleet: Fleet | None = None
    sys_recorder: SysRecorder | None = None  # the broker's $SYS figures (not on workers)
    sys_client: Device | None = None
    sys_greenlet: gevent.Greenlet | None = None
    e2e_client: Device | None = None  # --mqtt-e2e: reads lamp/changed back


@events.init.add_listener
def _check(environment, **_kw) -> None:
    o = environment.parsed_options
    if o is None:
        return
    run_state.of(environment, MqttRun).settings = settings_from(o)
    if isinstance(environment.runner, MasterRunner | WorkerRunner):
        return  # a worker knows the broker only from the master's spawn message: it probes at test start
    _probe(environment)


def _probe(environment) -> None:
    """One probe connection: an unreachable broker or refused credentials end the run in one line."""
    o = environment.parsed_options
    s = run_state.of(environment, MqttRun).settings
    probe = Device(f"lampi-probe-{os.getpid()}", s, fire=lambda **_kw: None)
    try:
        probe.client.connect(s.host, s.port, keepalive=s.keepalive)
    except (OSError, ValueError) as exc:
        raise OptionError(f"MQTT broker {redact(o.mqtt_url)} unreachable: {exc}") from None
    probe.driver = gevent.spawn(probe._drive)
    got = probe.connected.wait(s.connect_timeout)
    reason = probe.connack_reason
    probe.close()
    if not got:
        raise OptionError(f"MQTT broker {redact(o.mqtt_url)} sent no CONNACK within {s.connect_timeout:g} s")
    if reason:
        raise OptionError(f"MQTT broker {redact(o.mqtt_url)} refused the connection: {reason}")


OPEN_MODEL = model.topic(model.LAMP_CHANGED)  # the DROPPED row's name


@events.test_start.add_listener
def _start(environment, **_kw) -> None:
    o, run = environment.parsed_options, run_state.of(environment, MqttRun)
    if isinstance(environment.runner, WorkerRunner):
        # The run's options as the master sent them (they came with the spawn message, just before this).
        run.settings = settings_from(o)
        _probe(environment)
    s, run.fleet = run.settings, fleet_from(o)
    if not isinstance(environment.runner, WorkerRunner) and not o.mqtt_no_sys:
        rec = run.sys_recorder = SysRecorder(results_dir())
        run.sys_client = subscriber(f"lampi-sys-{os.getpid()}", s, [("$SYS/#", 0)], rec.on_message)

        def sample_sys() -> None:
            while True:
                gevent.sleep(sample_interval(environment))
                record_sample(environment, "mosquitto", rec.sample())

        run.sys_greenlet = gevent.spawn(sample_sys)
    open_model.for_users(environment, OPEN_MODEL, o.mqtt_message_rate)
    if o.mqtt_e2e and not isinstance(environment.runner, MasterRunner):
        name = model.topic(model.LAMP_CHANGED)

        def on_message(msg) -> None:
            body = parse_payload(msg.payload)
            if body and "_ts" in body and not msg.retain:  # its own E2E row, outside Aggregated
                e2e.record(environment, name, max(0.0, time.time() * 1000 - body["_ts"]), len(msg.payload))

        pattern = model.LAMP_CHANGED.topic.replace("{device_id}", "+")
        run.e2e_client = subscriber(f"lampi-e2e-{os.getpid()}", s, [(pattern, 1)], on_message)


@events.test_stop.add_listener
def _stop(environment, **_kw) -> None:
    run = run_state.of(environment, MqttRun)
    if run.sys_client is not None:
        record_sample(environment, "mosquitto", run.sys_recorder.sample())
        run.sys_greenlet.kill(block=False)
        run.sys_recorder.close()
        run.sys_client.close()
        run.sys_client = run.sys_recorder = run.sys_greenlet = None
    if run.e2e_client is not None:
        run.e2e_client.close()
        run.e2e_client = None


def settings(environment) -> Settings:
    """The broker and client settings each device connects with."""
    return run_state.of(environment, MqttRun).settings


def fleet(environment) -> Fleet:
    """The devices' profile, numbers and end-to-end stamping for the current test."""
    return run_state.of(environment, MqttRun).fleet
