"""Fixtures for the MQTT devices: a subscriber in the test process, a broker of our own."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import threading
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from stack import Endpoint, Stack, free_port
from stack.core import poll_until
from stack.services import mqtt_connack
from tests.helpers import REPO, run_locust, wait_for

LOCUSTFILE = str(REPO / "locustfiles" / "mqtt.py")


class Recorder:
    """A paho subscriber (its own thread; the test process is not gevent-patched)."""

    def __init__(self, port: int, topic: str | list[str] = "devices/#", qos: int = 2, host: str = "127.0.0.1") -> None:
        self.messages: list[mqtt.MQTTMessage] = []
        self.lock = threading.Lock()
        self.ready = threading.Event()
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2)
        self.client.on_message = self._on_message
        self.client.on_subscribe = lambda *a: self.ready.set()
        topics = [(t, qos) for t in ([topic] if isinstance(topic, str) else topic)]
        self.client.on_connect = lambda c, u, f, rc, p: c.subscribe(topics)
        self.client.connect(host, port)
        self.client.loop_start()
        assert self.ready.wait(10), "subscription not acknowledged"

    def _on_message(self, client, userdata, msg) -> None:
        with self.lock:
            self.messages.append(msg)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def run_devices(url: str, *args: str, users: int = 10, run_time: str = "4s", csv=None, env=None, timeout=180):
    extra = ["--csv", str(csv)] if csv else []
    return run_locust(["-f", LOCUSTFILE, "--headless", "-u", str(users), "-r", str(min(max(users, 10), 500)), "-t", run_time,
                       "--mqtt-url", url, "--no-monitor", *extra, *args], env=env, timeout=timeout)


@pytest.fixture
def own_broker(tmp_path):
    """A Mosquitto of this test only (it may be restarted)."""
    s = Stack(tmp_path / "stack", free_ports=True)
    endpoint = s.start("mosquitto")["mosquitto"]
    yield s, endpoint
    s.stop()


@pytest.fixture
def auth_broker(tmp_path):
    """Mosquitto that requires user lampi / password s3cret."""
    port = free_port()
    passwd = tmp_path / "passwd"
    subprocess.run(["mosquitto_passwd", "-b", "-c", str(passwd), "lampi", "s3cret"], check=True)
    conf = tmp_path / "mosquitto.conf"
    conf.write_text(f"listener {port} 127.0.0.1\nallow_anonymous false\npassword_file {passwd}\n"
                    "persistence false\nlog_dest none\n" + ("user root\n" if os.geteuid() == 0 else ""))
    proc = subprocess.Popen(["mosquitto", "-c", str(conf)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    import socket

    def up() -> bool:
        with socket.create_connection(("127.0.0.1", port), timeout=1):
            return True

    poll_until(up, timeout=20, what="auth mosquitto")
    yield f"mqtt://127.0.0.1:{port}"
    proc.terminate()
    proc.wait(timeout=10)


def pattern(topic: str) -> str:
    """The topic with its fake device id replaced by `<device_id>`, as the model writes it."""
    return re.sub(r"\b1e[0-9a-f]{10}", "<device_id>", topic)


def retained_view(port: int, count: int) -> dict[str, tuple[bytes, int, bool]]:
    """What a new subscriber to the devices' topics gets: {pattern: (payload, qos, retain)}."""
    late = Recorder(port, topic=["devices/#", "$SYS/broker/connection/#"])
    try:
        wait_for(lambda: len({m.topic for m in late.messages}) >= count, timeout=30, what=f"{count} retained topics")
        with late.lock:
            return {pattern(m.topic): (m.payload, m.qos, m.retain) for m in late.messages}
    finally:
        late.close()


class CourseLamp:
    """A LAMPI as the course builds it, for comparison with the simulated devices.

    Its own Mosquitto is bridged to the cloud as the course's bridging assignment asks: remote client
    id `<device_id>_broker`, `lamp/changed` and `lamp/connection/+/state` out and `lamp/set_config` in
    at QoS 1, `lamp/associated` in at QoS 2, all under `devices/<device_id>/` on the cloud. On it run
    the course's two services as its assignments specify them: `lamp_service` and `lamp_ui` each set a
    last will `0` and publish `1` on `lamp/connection/<client id>/state` (QoS 2, retained), and
    `lamp_service` publishes its state on `lamp/changed` (QoS 1, retained, json.dumps) on connect.
    """

    def __init__(self, home: Path, cloud: Endpoint, device_id: str) -> None:
        home.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        prefix = f"devices/{device_id}/"
        conf = home / "lamp-mosquitto.conf"
        conf.write_text("\n".join([
            f"listener {self.port} 127.0.0.1", "allow_anonymous true", "persistence false", "log_dest none",
            *(["user root"] if os.geteuid() == 0 else []),
            f"connection {device_id}_broker", f"address 127.0.0.1:{cloud.port}", f"remote_clientid {device_id}_broker",
            f'topic lamp/set_config in 1 "" {prefix}', f'topic lamp/changed out 1 "" {prefix}',
            f'topic lamp/connection/+/state out 1 "" {prefix}', f'topic lamp/associated in 2 "" {prefix}',
            "cleansession false", "",
        ]))
        self.broker = subprocess.Popen(["mosquitto", "-c", str(conf)], stdout=subprocess.DEVNULL,
                                       stderr=subprocess.DEVNULL, start_new_session=True)
        poll_until(lambda: mqtt_connack(self.port), timeout=20, what="lamp mosquitto")
        self.services = []
        for client_id in ("lamp_service", "lamp_ui"):
            c = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv311)
            state = f"lamp/connection/{client_id}/state"
            c.will_set(state, "0", qos=2, retain=True)
            c.connect("127.0.0.1", self.port)
            c.loop_start()
            c.publish(state, "1", qos=2, retain=True).wait_for_publish(10)
            self.services.append(c)
        body = {"color": {"h": 0.25, "s": 1.0}, "brightness": 0.5, "on": True, "client": "lamp_ui"}
        self.services[0].publish("lamp/changed", json.dumps(body), qos=1, retain=True).wait_for_publish(10)

    def vanish(self) -> None:
        """Power lost: the lamp's broker dies, its bridge connection drops without a DISCONNECT."""
        for c in self.services:
            c.loop_stop()
        os.killpg(self.broker.pid, signal.SIGKILL)
        self.broker.wait(timeout=10)

    def close(self) -> None:
        if self.broker.poll() is None:
            self.vanish()


@pytest.fixture
def two_clouds(tmp_path):
    """Two fresh Mosquittos: one for a course lamp's bridge, one for the simulated devices."""
    stacks = [Stack(tmp_path / name, free_ports=True) for name in ("course", "sim")]
    try:
        yield tuple(s.start("mosquitto")["mosquitto"] for s in stacks)
    finally:
        for s in stacks:
            s.stop()


__all__ = ["CourseLamp", "Recorder", "pattern", "retained_view", "run_devices", "mqtt_connack"]
