"""Fixtures for the MQTT devices: a subscriber in the test process, a broker of our own."""

from __future__ import annotations

import os
import subprocess
import threading

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from stack import Stack, free_port
from stack.core import poll_until
from stack.services import _mqtt_connack
from tests.helpers import REPO, run_locust

LOCUSTFILE = str(REPO / "locustfiles" / "mqtt.py")


class Recorder:
    """A paho subscriber (its own thread; the test process is not gevent-patched)."""

    def __init__(self, port: int, topic: str = "devices/#", qos: int = 2) -> None:
        self.messages: list[mqtt.MQTTMessage] = []
        self.lock = threading.Lock()
        self.ready = threading.Event()
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2)
        self.client.on_message = self._on_message
        self.client.on_subscribe = lambda *a: self.ready.set()
        self.client.on_connect = lambda c, u, f, rc, p: c.subscribe(topic, qos)
        self.client.connect("127.0.0.1", port)
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


__all__ = ["Recorder", "run_devices", "_mqtt_connack"]
