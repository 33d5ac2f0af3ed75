"""Open edX tracking events as the LMS emits them, for the pipeline load generator.

Two mixes: ``enrollment`` — each learner toggles between enrollment activated/deactivated,
as the reference `load_test_tracking_events` does (every learner starts enrolled, so its first
event is a deactivation) — and ``realistic``, where video, problem, navigation and completion
events dominate as they do on a real course. Each event carries the fields the LMS puts in it
(those of event-routing-backends' test fixture for its name), so the real ERB transforms every one.

Every event's timestamp is unique within a run, because the end-to-end check matches stored
xAPI statements to events by it (ERB copies the event time into the statement's `timestamp`):
microseconds are rounded to a multiple of TIME_SLOTS and the process's slot is added, and a
process never reuses a value.
"""

from __future__ import annotations

import csv
import random
import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import quote, urlsplit

from openedx_erb import LMS_ROOT_URL

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
class TrackedLearner:
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
    """ISO 8601 with +00:00, as Open edX writes event times: `datetime.isoformat()` in eventtracking's
    log encoder and openedx-events' Avro serializer, so a time on a whole second has no fraction. ERB
    hashes this string into the statement id, so the form must be the LMS's own."""
    return datetime.fromtimestamp(us / 1_000_000, UTC).isoformat()


def generated_users(prefix: str, count: int) -> list[tuple[int, str]]:
    """(user_id, username) of `count` generated learners: the prefix as given, then a number
    (`lt_000000` for Aspects' default `lt_`; a prefix without a separator gets none added)."""
    return [(n + 1, f"{prefix}{n:06d}") for n in range(count)]


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


# What the LMS puts in each event, per event-routing-backends' fixtures (one JSON per event name,
# processors/tests/fixtures/current/): browser events come from the courseware page through
# /event, problem_check from the problem's XBlock handler, enrollment and grade events from the server.
LMS_HOST = urlsplit(LMS_ROOT_URL).netloc  # the LMS that ERB's statements name
AGENT = "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0 Safari/537.36"
BLOCKS = {"chapter": 5, "sequential": 20, "video": 40, "problem": 60}  # per course


@dataclass
class Course:
    """One course's blocks: usage keys with 32-hex block ids, as Studio makes them."""

    course_id: str
    org: str = ""
    hex: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.org = self.org or _org(self.course_id)
        self.hex = {kind: [uuid.uuid5(uuid.NAMESPACE_URL, f"{self.course_id}/{kind}/{i}").hex for i in range(n)]
                    for kind, n in BLOCKS.items()}
        self._prefix = "block-v1:" + self.course_id.split(":", 1)[-1] + "+type@"

    def usage_key(self, kind: str, i: int) -> str:
        return f"{self._prefix}{kind}+block@{self.hex[kind][i]}"

    def courseware_url(self, seq: int) -> str:
        """The unit page a learner is on; ERB takes a browser event's block from activate_block_id."""
        chapter = self.hex["chapter"][seq * BLOCKS["chapter"] // BLOCKS["sequential"]]
        key = quote(self.usage_key("sequential", seq), safe="")
        return (f"{LMS_ROOT_URL}/courses/{self.course_id}/courseware/{chapter}/{self.hex['sequential'][seq]}/"
                f"?activate_block_id={key}")


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
        self.course = Course(self.course_id, self.org)
        self.org = self.course.org
        self._names = list(REALISTIC_MIX)
        self._weights = list(REALISTIC_MIX.values())
        self._contexts: dict[int, dict] = {}

    def next_event(self, learner: TrackedLearner) -> dict:
        kind = "enrollment" if self.mix == "enrollment" else random.choices(self._names, self._weights)[0]
        us = self.clock.next_us()
        base = self._base_context(learner)
        if kind == "enrollment":
            # Learners unenroll from the dashboard and enroll from the course's about page.
            if learner.enrolled:
                name, referer = "edx.course.enrollment.deactivated", f"{LMS_ROOT_URL}/dashboard"
            else:
                name, referer = "edx.course.enrollment.activated", f"{LMS_ROOT_URL}/courses/{self.course_id}/about"
            learner.enrolled = not learner.enrolled
            data = {"course_id": self.course_id, "mode": "audit", "user_id": learner.user_id}
            context = {**base, "client_id": None, "path": "/change_enrollment", "referer": referer}
        elif kind == "edx.course.grade.passed.first_time":
            name = kind
            data = {"course_id": self.course_id, "user_id": learner.user_id}
            seq = random.randrange(BLOCKS["sequential"])
            context = {**base, "client_id": None, "path": self._handler_path("problem", seq * 3, "problem_check"),
                       "referer": self.course.courseware_url(seq)}
        elif kind == "problem_check":
            name = kind
            data, context = self._problem_check(base)
        else:
            name = kind
            data, context = self._browser(name, base)
        return {"name": name, "timestamp": iso(us), "data": data, "context": context}

    def _base_context(self, learner: TrackedLearner) -> dict:
        base = self._contexts.get(learner.user_id)
        if base is None:
            n = learner.user_id
            base = {"accept_language": "en-US,en;q=0.9", "agent": AGENT, "course_id": self.course_id,
                    "host": LMS_HOST, "ip": f"10.{n >> 16 & 255}.{n >> 8 & 255}.{n & 255}", "org_id": self.org,
                    "session": uuid.uuid5(uuid.NAMESPACE_OID, f"session/{n}").hex, "user_id": n,
                    "username": learner.username}
            self._contexts[learner.user_id] = base
        return base

    def _handler_path(self, kind: str, i: int, handler: str) -> str:
        return (f"/courses/{self.course_id}/xblock/{self.course.usage_key(kind, i % BLOCKS[kind])}"
                f"/handler/xmodule_handler/{handler}")

    def _browser(self, name: str, base: dict) -> tuple[dict, dict]:
        """play_video, pause_video, edx.ui.lms.sequence.next_selected: sent by the page to /event."""
        if name == "edx.ui.lms.sequence.next_selected":
            seq = random.randrange(BLOCKS["sequential"])
            tabs = random.randint(2, 10)
            data = {"current_tab": random.randint(1, tabs - 1), "id": self.course.usage_key("sequential", seq),
                    "tab_count": tabs, "widget_placement": random.choice(("top", "bottom"))}
        else:
            video = random.randrange(BLOCKS["video"])
            seq = video % BLOCKS["sequential"]
            duration = 60 * (2 + video % 9)
            # The video player sends the bare block id, not the usage key.
            data = {"code": "html5", "currentTime": round(random.uniform(0, duration), 3), "duration": duration,
                    "id": self.course.hex["video"][video]}
        page = self.course.courseware_url(seq)
        context = {**base, "client_id": f"{base['user_id']}.1700000000", "event_source": "browser", "page": page,
                   "path": "/event", "referer": page}
        return data, context

    def _problem_check(self, base: dict) -> tuple[dict, dict]:
        """The server's problem_check (graded), from the problem's XBlock handler: one question."""
        problem = random.randrange(BLOCKS["problem"])
        hexid = self.course.hex["problem"][problem]
        usage = self.course.usage_key("problem", problem)
        answer_id = f"{hexid}_2_1"
        grade = random.randint(0, 1)
        correctness = "correct" if grade else "incorrect"
        choice = f"choice_{random.randrange(4)}"
        correct_map = {answer_id: {"answervariable": None, "correctness": correctness, "hint": "", "hintmode": None,
                                   "msg": "", "npoints": None, "queuestate": None}}
        data = {"answers": {answer_id: choice}, "attempts": random.randint(1, 3), "correct_map": correct_map,
                "grade": grade, "max_grade": 1, "problem_id": usage,
                "state": {"correct_map": correct_map, "done": True, "has_saved_answers": False,
                          "input_state": {answer_id: {}}, "seed": 1, "student_answers": {answer_id: choice}},
                "submission": {answer_id: {"answer": f"answer {choice[-1]}", "correct": bool(grade),
                                           "group_label": "", "input_type": "choicegroup",
                                           "question": f"Question {problem + 1}", "response_type": "multiplechoiceresponse",
                                           "variant": ""}},
                "success": correctness}
        context = {**base, "asides": {}, "client_id": None, "course_user_tags": {}, "event_source": "server",
                   "module": {"display_name": f"Problem {problem + 1}", "usage_key": usage}, "page": "x_module",
                   "path": self._handler_path("problem", problem, "problem_check"),
                   "referer": self.course.courseware_url(problem % BLOCKS["sequential"])}
        return data, context


def _org(course_id: str) -> str:
    # course-v1:ORG+COURSE+RUN
    body = course_id.split(":", 1)[-1]
    return body.split("+", 1)[0] if "+" in body else ""
