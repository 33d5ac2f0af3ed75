"""LAMPI devices publishing to the MQTT broker, per docs/mqtt-model.md.

    locust -f locustfiles/mqtt.py --config conf/mqtt.conf                      # web UI
    locust -f locustfiles/mqtt.py --headless -u 2000 -r 100 -t 5m --mqtt-profile worst

The options, the broker's probe, the $SYS recording and the end-to-end subscriber are in
generators.mqtt_run (docs/mqtt.md).
"""

from __future__ import annotations

import random
import time

import gevent
from locust import User, task
from locust.exception import StopUser

import loadtesting.locust_plugin  # noqa: F401  - capacity search, sar capture, phases
import monitors.locust_plugin  # noqa: F401  - pipeline monitor, ClickHouse sink, thresholds
from generators import mqtt_model as model
from generators import mqtt_run, open_model
from generators.lampi_data import device_id
from generators.mqtt_client import Device


class LampiDevice(User):
    """One LAMPI: the bridge's announcement on connect, then bursts of lamp/changed (or, in the open
    model, one lamp/changed at each planned instant it takes)."""

    ticket = None
    model: open_model.OpenModel | None = None  # the open model's plan, when it is on

    def wait_time(self) -> float:  # the closed model's (open_model.attach replaces it in the open model)
        return random.uniform(*self.fleet.profile.interaction_gap)

    def on_start(self) -> None:
        self.fleet = fleet = mqtt_run.fleet(self.environment)
        self.device_id = device_id(fleet.pick())
        self.e2e = fleet.e2e
        self.state = model.random_state()
        kind, payload = model.WILL
        will = (kind.topic.format(device_id=self.device_id), payload, kind.qos, kind.retain)
        # The bridge's client id is `<device_id>_broker`; the suffix keeps two sessions that drew the
        # same fake device from taking over each other's connection.
        self.dev = Device(f"{self.device_id}_broker-{random.randrange(1 << 30):x}",
                          mqtt_run.settings(self.environment), self.environment.events.request.fire, will=will)
        self.dev.on_reconnect = self.announce
        if self.dev.connect():
            self.announce()
        self.model = open_model.named(self.environment, mqtt_run.OPEN_MODEL)
        open_model.attach(self, self.model)  # closed model: no-op

    def announce(self) -> None:
        for kind in model.ANNOUNCE:
            self.send(kind, kind.payload(**self.state) if kind is model.LAMP_CHANGED else kind.payload())

    def send(self, kind: model.MessageKind, payload: bytes) -> None:
        self.dev.publish(kind.topic.format(device_id=self.device_id), model.topic(kind), payload, kind.qos,
                         kind.retain)

    @task
    def interact(self) -> None:
        if self.model is not None:
            self.planned_message()
            return
        if not self.dev.connected.is_set():
            if not self.dev.running or self.dev.driver is None:
                if self.dev.connect():
                    self.announce()
            return
        p = self.fleet.profile
        for i in range(p.burst):
            self.state = state = model.random_state()
            if self.e2e:
                state = {**state, "_ts": time.time() * 1000}
            self.send(model.LAMP_CHANGED, model.LAMP_CHANGED.payload(**state))
            if i < p.burst - 1:
                gevent.sleep(p.burst_interval)

    def planned_message(self) -> None:
        """Open model: one lamp/changed for the instant taken (a device that lost its connection
        reconnects first; a failed reconnect fails the message: a failed request, not a drop)."""
        ticket = open_model.begin(self)
        if ticket is None:
            raise StopUser()
        if not self.dev.connected.is_set() and (not self.dev.running or self.dev.driver is None):
            if self.dev.connect():
                self.announce()
        state = model.random_state()
        if self.e2e:
            state["_ts"] = time.time() * 1000
        kind = model.LAMP_CHANGED
        self.dev.publish(kind.topic.format(device_id=self.device_id), model.topic(kind), kind.payload(**state),
                         kind.qos, kind.retain, open_model.context_of(ticket))

    def on_stop(self) -> None:
        self.dev.close()
