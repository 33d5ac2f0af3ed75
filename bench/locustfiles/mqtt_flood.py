"""bench/mqtt.py's suite side: each user is one device of generators/mqtt_client.py publishing
lamp/changed as fast as its in-flight window allows (QoS from BENCH_MQTT_QOS), timed to PUBACK."""

import os

import gevent
from locust import User, constant, task

from generators import mqtt_model as model
from generators.mqtt_client import Device, Settings

QOS = int(os.environ.get("BENCH_MQTT_QOS", "0"))
HOST, PORT = os.environ["BENCH_MQTT_HOST"], int(os.environ["BENCH_MQTT_PORT"])
WINDOW = 100  # messages in flight per device


class Flood(User):
    wait_time = constant(0)

    def on_start(self) -> None:
        self.dev = Device(f"flood-{id(self):x}", Settings(HOST, PORT, max_inflight=WINDOW, max_queued=WINDOW * 2),
                          self.environment.events.request.fire)
        self.dev.connect()
        self.payload = model.LAMP_CHANGED.payload(**model.random_state())

    @task
    def publish(self) -> None:
        while len(self.dev.pending) >= WINDOW:
            gevent.sleep(0)  # the driver greenlet reads PUBACKs meanwhile
        self.dev.publish("devices/bench/lamp/changed", "devices/+/lamp/changed", self.payload, QOS, False)
        if QOS == 0 and len(self.dev.pending) >= WINDOW // 2:
            gevent.sleep(0)

    def on_stop(self) -> None:
        self.dev.close()

