"""The LAMPI upstream MQTT interaction model: the one place its numbers live.

locustfiles/mqtt.py publishes exactly these messages; loadtesting/mqtt-model.md holds the tables
`render_tables()` makes from them (a test checks the two agree).
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass


@dataclass(frozen=True)
class MessageKind:
    name: str
    topic: str  # pattern; {device_id} is filled in per device
    qos: int
    retain: bool
    when: str
    why: str
    example: dict | str

    def payload(self, **values) -> bytes:
        if isinstance(self.example, str):
            return self.example.encode()
        return json.dumps({**self.example, **values}, separators=(",", ":")).encode()

    def size(self) -> int:
        return len(self.payload())


LAMP_CHANGED = MessageKind(
    name="lamp_changed",
    topic="devices/{device_id}/lamp/changed",
    qos=1,
    retain=True,
    when="every state change on the lamp: touchscreen slider steps, power toggles",
    why="QoS 1: a lost state update leaves the web UI wrong, a duplicate is harmless (idempotent state); "
        "retained so a new subscriber (web app, bridge) gets the current state at once",
    example={"color": {"h": 0.5, "s": 1.0}, "brightness": 0.8, "on": True, "client": "lamp_ui"},
)
CONNECTION_STATE = MessageKind(
    name="connection_state",
    topic="devices/{device_id}/lamp/connection/lamp_service/state",
    qos=1,
    retain=True,
    when="on every (re)connect (and '0' as the broker-sent last will)",
    why="QoS 1 and retained: the cloud must know whether a lamp is online, including after it vanished",
    example="1",
)
ASSOCIATED = MessageKind(
    name="associated",
    topic="devices/{device_id}/lamp/associated",
    qos=1,
    retain=True,
    when="once per session, after connecting",
    why="QoS 1 and retained: the association state (and pairing code) must not be lost",
    example={"associated": True, "code": ""},
)
KINDS = (LAMP_CHANGED, CONNECTION_STATE, ASSOCIATED)


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
    return {"color": {"h": round(random.random(), 3), "s": round(random.random(), 3)},
            "brightness": round(random.random(), 3), "on": random.random() > 0.1, "client": "lamp_ui"}


def topic(kind: MessageKind) -> str:
    """The request name: the topic pattern, one row for all devices."""
    return kind.topic.replace("{device_id}", "<device_id>")


def render_tables() -> str:
    """The model's tables, as loadtesting/mqtt-model.md shows them."""
    rows = ["| message | topic | QoS | retain | payload bytes | sent | why |", "|---|---|---|---|---|---|---|"]
    for k in KINDS:
        rows.append(f"| {k.name} | `{topic(k)}` | {k.qos} | {'yes' if k.retain else 'no'} | {k.size()} | "
                    f"{k.when} | {k.why} |")
    rows += ["", "| profile | interaction gap (s) | burst | burst spacing (s) | lamp_changed per device (msg/s) | meaning |",
             "|---|---|---|---|---|---|"]
    for p in PROFILES.values():
        rows.append(f"| {p.name} | {p.interaction_gap[0]:g}–{p.interaction_gap[1]:g} | {p.burst} | "
                    f"{p.burst_interval:g} | {p.per_device_rate():.3f} | {p.description} |")
    return "\n".join(rows) + "\n"
