"""Open edX tracking events as the LMS emits them, for the pipeline load generator.

Two mixes: ``enrollment`` — each learner toggles between enrollment activated/deactivated,
as the reference `load_test_tracking_events` does (every learner starts enrolled, so its first
event is a deactivation) — and ``realistic``, where video, problem, navigation and completion
events dominate as they do on a real course.

Every event's timestamp is unique within a run, because the end-to-end check matches stored
xAPI statements to events by it (ERB copies the event time into the statement's `timestamp`):
microseconds are rounded to a multiple of TIME_SLOTS and the process's slot is added, and a
process never reuses a value.
"""

from __future__ import annotations

import csv
import json
import random
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

TIME_SLOTS = 64  # processes that can generate at once with distinct timestamps

# name -> weight in the realistic mix; enrollment events toggle per learner in both mixes.
REALISTIC_MIX = {
    "play_video": 22,
    "pause_video": 18,
    "problem_check": 25,
    "edx.ui.lms.sequence.next_selected": 25,
    "enrollment": 5,
    "edx.course.grade.passed.first_time": 5,
}
MIXES = ("enrollment", "realistic")


@dataclass
class Learner:
    user_id: int
    username: str
    enrolled: bool = True  # the reference enrolls every learner before the test


@dataclass
class Clock:
    """Unique event times for one process: slot `slot` of every TIME_SLOTS microseconds."""

    slot: int = 0
    _last: int = 0

    def next_us(self) -> int:
        now = int(time.time() * 1_000_000)
        t = now - now % TIME_SLOTS + self.slot % TIME_SLOTS
        if t <= self._last:  # more than one event per slot period: step to the next free slot
            t = self._last + TIME_SLOTS
        self._last = t
        return t


def iso(us: int) -> str:
    """ISO 8601 with microseconds and +00:00, as Open edX writes event times."""
    return datetime.fromtimestamp(us / 1_000_000, UTC).isoformat(timespec="microseconds")


def parse_iso(text: str) -> float:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


def load_users(path: Path | str) -> list[tuple[int, str]]:
    """(user_id, username) pairs from a CSV file with columns user_id,username (header optional)."""
    rows: list[tuple[int, str]] = []
    with open(path, newline="") as f:
        for i, row in enumerate(csv.reader(f)):
            if not row or row[0].startswith("#"):
                continue
            if i == 0 and not row[0].strip().isdigit():
                continue  # header
            if len(row) < 2 or not row[0].strip().isdigit() or not row[1].strip():
                raise ValueError(f"{path} line {i + 1}: {','.join(row)!r}: expected user_id,username")
            rows.append((int(row[0]), row[1].strip()))
    if not rows:
        raise ValueError(f"{path}: no users; expected lines of user_id,username")
    return rows


@dataclass
class EventFactory:
    """Builds the tracking events of one generator process."""

    course_id: str
    mix: str = "enrollment"
    clock: Clock = field(default_factory=Clock)
    org: str = ""

    def __post_init__(self) -> None:
        if self.mix not in MIXES:
            raise ValueError(f"--event-mix {self.mix!r}: expected one of {', '.join(MIXES)}")
        self.org = self.org or _org(self.course_id)
        self._names = list(REALISTIC_MIX)
        self._weights = list(REALISTIC_MIX.values())

    def next_event(self, learner: Learner) -> dict:
        kind = "enrollment" if self.mix == "enrollment" else random.choices(self._names, self._weights)[0]
        us = self.clock.next_us()
        if kind == "enrollment":
            name = "edx.course.enrollment.deactivated" if learner.enrolled else "edx.course.enrollment.activated"
            learner.enrolled = not learner.enrolled
            data = {"user_id": learner.user_id, "course_id": self.course_id, "mode": "audit"}
        else:
            name = kind
            data = self._data(name, learner)
        return {
            "name": name,
            "timestamp": iso(us),
            "data": data,
            "context": {"course_id": self.course_id, "org_id": self.org, "enterprise_uuid": "",
                        "user_id": learner.user_id, "username": learner.username},
        }

    def _data(self, name: str, learner: Learner) -> dict:
        block = f"block-v1:{self.course_id[len('course-v1:'):]}+type@"
        if name in ("play_video", "pause_video"):
            return {"id": f"{block}video+block@{random.randrange(40):04x}", "currentTime": round(random.uniform(0, 600), 3),
                    "code": "html5", "duration": 600.0}
        if name == "problem_check":
            return {"problem_id": f"{block}problem+block@{random.randrange(60):04x}", "attempts": 1,
                    "grade": random.randint(0, 1), "max_grade": 1, "success": "correct", "answers": {}}
        if name == "edx.ui.lms.sequence.next_selected":
            return {"id": f"{block}sequential+block@{random.randrange(20):04x}", "current_tab": 1, "tab_count": 5,
                    "target_tab": 2}
        return {"user_id": learner.user_id, "course_id": self.course_id}  # grade.passed.first_time


def _org(course_id: str) -> str:
    # course-v1:ORG+COURSE+RUN
    body = course_id.split(":", 1)[-1]
    return body.split("+", 1)[0] if "+" in body else ""


def compact(obj) -> str:
    """Compact JSON, as Vector's Aspects pipeline and ClickHouse's visitParam functions want it."""
    return json.dumps(obj, separators=(",", ":"))
