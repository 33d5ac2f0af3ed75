"""The LAMPI upstream MQTT interaction model: the one place its numbers live.

What a LAMPI of the course sends to the cloud broker, as the cloud broker receives it: the lamp's
own Mosquitto bridges its local topics to the cloud under `devices/<device_id>/` at the bridge's
QoS (1), and announces itself on `$SYS/broker/connection/<device_id>_broker/state`.
locustfiles/mqtt.py publishes exactly these messages; docs/mqtt-model.md holds the tables
`render_tables()` makes from them (a test checks the two agree).
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass


@dataclass(frozen=True)
class MessageKind:
    name: str
    topic: str  # at the cloud broker; {device_id} is filled in per device
    qos: int  # as the cloud broker receives it (the bridge's QoS caps the lamp's)
    retain: bool
    on_lamp: str  # who publishes it on the lamp, and how
    when: str
    why: str
    example: dict | str

    def payload(self, **values) -> bytes:
        if isinstance(self.example, str):
            return self.example.encode()
        # json.dumps with its default separators, as the course's lamp service writes it.
        return json.dumps({**self.example, **values}).encode()

    def size(self) -> int:
        return len(self.payload())


BRIDGE_STATE = MessageKind(
    name="bridge_state",
    topic="$SYS/broker/connection/{device_id}_broker/state",
    qos=1,
    retain=True,
    on_lamp="the lamp's Mosquitto bridge (`notifications`, on by default); its last will is `0`, QoS 1, retained",
    when="on every (re)connect of the lamp to the cloud; '0' as the broker-sent last will when the lamp vanishes",
    why="the cloud's mqtt-daemon watches it to register a new lamp; the only state that turns 0 when a lamp "
        "loses power or network",
    example="1",
)
SERVICE_STATE = MessageKind(
    name="lamp_service_state",
    topic="devices/{device_id}/lamp/connection/lamp_service/state",
    qos=1,
    retain=True,
    on_lamp="lamp_service: `lamp/connection/lamp_service/state` `1`, QoS 2, retained, last will `0` (QoS 2, "
            "retained) on the lamp's broker; bridged out at QoS 1",
    when="on every (re)connect (the bridge re-sends the retained copy)",
    why="whether the lamp's hardware service runs; its '0' comes from the lamp's own broker, so only a "
        "service crash on a living lamp sends it",
    example="1",
)
UI_STATE = MessageKind(
    name="lamp_ui_state",
    topic="devices/{device_id}/lamp/connection/lamp_ui/state",
    qos=1,
    retain=True,
    on_lamp="lamp_ui (touchscreen app): the same as lamp_service, under its own client id",
    when="on every (re)connect (the bridge re-sends the retained copy)",
    why="whether the touchscreen app runs",
    example="1",
)
LAMP_CHANGED = MessageKind(
    name="lamp_changed",
    topic="devices/{device_id}/lamp/changed",
    qos=1,
    retain=True,
    on_lamp="lamp_service: `lamp/changed`, QoS 1, retained, after each applied `lamp/set_config` and on "
            "connect; bridged out at QoS 1",
    when="every state change on the lamp (touchscreen slider steps, power toggles), and on every (re)connect",
    why="a lost state update leaves the web UI wrong, a duplicate is harmless (idempotent state); retained "
        "so a new subscriber (web app) gets the current state at once",
    example={"color": {"h": 0.5, "s": 1.0}, "brightness": 0.8, "on": True, "client": "lamp_ui"},
)
KINDS = (BRIDGE_STATE, SERVICE_STATE, UI_STATE, LAMP_CHANGED)
# What the cloud receives when a lamp (re)connects, in this order: the bridge's state, then the
# retained copies of the lamp's topics.
ANNOUNCE = (BRIDGE_STATE, SERVICE_STATE, UI_STATE, LAMP_CHANGED)
WILL = (BRIDGE_STATE, b"0")


@dataclass(frozen=True)
class Profile:
    """How often a device's owner interacts: each interaction is a burst of lamp_changed messages."""

    name: str
    interaction_gap: tuple[float, float]  # seconds between interactions (uniform)
    burst: int  # lamp_changed messages per interaction (slider drag steps)
    burst_interval: float  # seconds between messages in a burst
    description: str

    def per_device_rate(self) -> float:
        gap = sum(self.interaction_gap) / 2
        return self.burst / (gap + self.burst * self.burst_interval)


PROFILES = {
    "normal": Profile("normal", (60.0, 600.0), 10, 0.1,
                      "a person adjusts the lamp a few times an hour; a slider drag sends ~10 updates at 10/s"),
    "worst": Profile("worst", (0.0, 0.0), 10, 0.1,
                     "every user drags a slider on the touchscreen at the same time, without pause"),
}


def random_state() -> dict:
    """A state as the lamp service reports it: values rounded to 2 digits, changed by the touchscreen."""
    return {"color": {"h": round(random.random(), 2), "s": round(random.random(), 2)},
            "brightness": round(random.random(), 2), "on": random.random() > 0.1, "client": "lamp_ui"}


def topic(kind: MessageKind) -> str:
    """The request name: the topic pattern, one row for all devices."""
    return kind.topic.replace("{device_id}", "<device_id>")


def render_tables() -> str:
    """The model's tables, as docs/mqtt-model.md shows them."""
    rows = ["| message | topic at the cloud | QoS | retain | payload bytes | on the lamp | sent | why |",
            "|---|---|---|---|---|---|---|---|"]
    for k in KINDS:
        rows.append(f"| {k.name} | `{topic(k)}` | {k.qos} | {'yes' if k.retain else 'no'} | {k.size()} | "
                    f"{k.on_lamp} | {k.when} | {k.why} |")
    rows += ["", "| profile | interaction gap (s) | burst | burst spacing (s) | lamp_changed per device (msg/s) | meaning |",
             "|---|---|---|---|---|---|"]
    for p in PROFILES.values():
        rows.append(f"| {p.name} | {p.interaction_gap[0]:g}–{p.interaction_gap[1]:g} | {p.burst} | "
                    f"{p.burst_interval:g} | {p.per_device_rate():.3f} | {p.description} |")
    return "\n".join(rows) + "\n"
