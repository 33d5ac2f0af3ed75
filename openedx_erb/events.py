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

import bisect
import csv
import itertools
import random
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import quote, urlsplit

from openedx_erb import LMS_ROOT_URL
from openedx_erb.wire import TrackingLog, compact_json, iso_utc

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
    return iso_utc(us)


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
        self._pages = [self._courseware_url(seq) for seq in range(BLOCKS["sequential"])]

    def usage_key(self, kind: str, i: int) -> str:
        return f"{self._prefix}{kind}+block@{self.hex[kind][i]}"

    def courseware_url(self, seq: int) -> str:
        """The unit page a learner is on; ERB takes a browser event's block from activate_block_id."""
        return self._pages[seq]

    def _courseware_url(self, seq: int) -> str:
        chapter = self.hex["chapter"][seq * BLOCKS["chapter"] // BLOCKS["sequential"]]
        key = quote(self.usage_key("sequential", seq), safe="")
        return (f"{LMS_ROOT_URL}/courses/{self.course_id}/courseware/{chapter}/{self.hex['sequential'][seq]}/"
                f"?activate_block_id={key}")


@dataclass
class EventFactory:
    """Builds the tracking events of one generator process: `next_event` as dicts (what ERB and the
    Celery and Vector paths take), `next_tracking_log` as the event bus carries them (the data and
    context already JSON, the context joined from parts encoded once: the learner's, the page's or
    problem's). Both draw the same events: one is the other encoded (tests/pipeline/test_wire.py)."""

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
        self._cum_weights = list(itertools.accumulate(REALISTIC_MIX.values()))
        self._contexts: dict[int, dict] = {}
        self._learner_json: dict[int, tuple[str, str, str, str]] = {}  # per learner: encoded once
        self._part_json: dict[tuple, str] = {}  # per context part (page, problem, …): encoded once
        self._problem_json: dict[tuple, str] = {}  # problem_check data per (problem, answer, grade, attempts)
        self._id_json: dict[str, str] = {}  # block ids in browser events' data, as JSON strings

    def next_event(self, learner: TrackedLearner) -> dict:
        name, us, data, part, browser = self._draw(learner)
        base = self._base_context(learner)
        if browser:
            context = {**base, "client_id": f"{base['user_id']}.1700000000", **self._part(part)}
        else:
            context = {**base, **self._part(part)}
        return {"name": name, "timestamp": iso(us), "data": self._data(learner, data), "context": context}

    def next_tracking_log(self, learner: TrackedLearner) -> TrackingLog:
        """The next event as `wire.tracking_log(next_event(learner))` gives it, without building it."""
        name, us, data, part, browser = self._draw(learner)
        mine = self._learner_json.get(learner.user_id)
        if mine is None:
            mine = self._encode_learner(learner)
        part_json = self._part_json.get(part)
        if part_json is None:
            part_json = self._part_json[part] = compact_json(self._part(part))[1:-1]
        if data[0] == "problem":
            data_json = self._problem_json.get(data)
            if data_json is None:
                data_json = self._problem_json[data] = compact_json(self._data(learner, data))
        elif data[0] == "enrollment":
            data_json = mine[2]
        elif data[0] == "grade":
            data_json = mine[3]
        else:
            data_json = self._browser_json(data[1])
        context = f"{{{mine[0]},{mine[1]},{part_json}}}" if browser else f"{{{mine[0]},{part_json}}}"
        return TrackingLog(name, iso(us), data_json, context, learner.username)

    def _encode_learner(self, learner: TrackedLearner) -> tuple[str, str, str, str]:
        base = self._base_context(learner)
        mine = self._learner_json[learner.user_id] = (
            compact_json(base)[1:-1], compact_json({"client_id": f"{base['user_id']}.1700000000"})[1:-1],
            compact_json(self._data(learner, ("enrollment",))), compact_json(self._data(learner, ("grade",))))
        return mine

    def _draw(self, learner: TrackedLearner) -> tuple[str, int, tuple, tuple, bool]:
        """The next event's random choices: (name, time in µs, data (a key, or the dict itself), the
        key of its context's part, whether it is a browser event (a client id after the learner's))."""
        # random.choices(names, cum_weights)[0], and int(random() * n) for randrange(n): the draws the
        # random module makes, without its pure-Python argument handling (a third of building an event).
        rnd = random.random
        kind = "enrollment" if self.mix == "enrollment" else \
            self._names[bisect.bisect(self._cum_weights, rnd() * self._cum_weights[-1])]
        us = self.clock.next_us()
        if kind == "enrollment":
            # Learners unenroll from the dashboard and enroll from the course's about page.
            name = "edx.course.enrollment.deactivated" if learner.enrolled else "edx.course.enrollment.activated"
            part = ("enrollment", learner.enrolled)
            learner.enrolled = not learner.enrolled
            return name, us, ("enrollment",), part, False
        if kind == "edx.course.grade.passed.first_time":
            return kind, us, ("grade",), ("grade", int(rnd() * BLOCKS["sequential"])), False
        if kind == "problem_check":
            problem = int(rnd() * BLOCKS["problem"])
            grade = int(rnd() * 2)
            choice = int(rnd() * 4)
            data = ("problem", problem, grade, choice, 1 + int(rnd() * 3))
            return kind, us, data, ("problem", problem), False
        data, seq = self._browser_data(kind)
        return kind, us, ("browser", data), ("page", seq), True

    def _data(self, learner: TrackedLearner, data: tuple) -> dict:
        kind = data[0]
        if kind == "enrollment":
            return {"course_id": self.course_id, "mode": "audit", "user_id": learner.user_id}
        if kind == "grade":
            return {"course_id": self.course_id, "user_id": learner.user_id}
        if kind == "problem":
            return self._problem_data(*data[1:])
        return data[1]

    def _part(self, part: tuple) -> dict:
        """The context's keys after the learner's (a new dict each time: nothing shared between events)."""
        kind, k = part
        if kind == "page":
            page = self.course.courseware_url(k)
            return {"event_source": "browser", "page": page, "path": "/event", "referer": page}
        if kind == "enrollment":  # `k`: enrolled before this event, so it unenrolls
            referer = f"{LMS_ROOT_URL}/dashboard" if k else f"{LMS_ROOT_URL}/courses/{self.course_id}/about"
            return {"client_id": None, "path": "/change_enrollment", "referer": referer}
        if kind == "grade":
            return {"client_id": None, "path": self._handler_path("problem", k * 3, "problem_check"),
                    "referer": self.course.courseware_url(k)}
        usage = self.course.usage_key("problem", k)
        return {"asides": {}, "client_id": None, "course_user_tags": {}, "event_source": "server",
                "module": {"display_name": f"Problem {k + 1}", "usage_key": usage}, "page": "x_module",
                "path": self._handler_path("problem", k, "problem_check"),
                "referer": self.course.courseware_url(k % BLOCKS["sequential"])}

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

    def _browser_data(self, name: str) -> tuple[dict, int]:
        """play_video, pause_video, edx.ui.lms.sequence.next_selected: sent by the page to /event; (data,
        the sequential whose page sent it)."""
        rnd = random.random
        if name == "edx.ui.lms.sequence.next_selected":
            seq = int(rnd() * BLOCKS["sequential"])
            tabs = 2 + int(rnd() * 9)
            data = {"current_tab": 1 + int(rnd() * (tabs - 1)), "id": self.course.usage_key("sequential", seq),
                    "tab_count": tabs, "widget_placement": "top" if rnd() < 0.5 else "bottom"}
            return data, seq
        video = int(rnd() * BLOCKS["video"])
        duration = 60 * (2 + video % 9)
        # The video player sends the bare block id, not the usage key.
        data = {"code": "html5", "currentTime": round(rnd() * duration, 3), "duration": duration,
                "id": self.course.hex["video"][video]}
        return data, video % BLOCKS["sequential"]

    def _browser_json(self, d: dict) -> str:
        """compact_json(d) of _browser_data's dicts, formatted without the JSON encoder (a fifth of building
        a bus event; tests/pipeline/test_wire.py holds it to the encoder's bytes). Ids are encoded once."""
        ids = self._id_json
        if "code" in d:  # a video: the JSON encoder writes floats as repr()
            block = ids.get(d["id"]) or ids.setdefault(d["id"], compact_json(d["id"]))
            return f'{{"code":"html5","currentTime":{d["currentTime"]!r},"duration":{d["duration"]:d},"id":{block}}}'
        block = ids.get(d["id"]) or ids.setdefault(d["id"], compact_json(d["id"]))
        return (f'{{"current_tab":{d["current_tab"]:d},"id":{block},"tab_count":{d["tab_count"]:d},'
                f'"widget_placement":"{d["widget_placement"]}"}}')

    def _problem_data(self, problem: int, grade: int, choice_index: int, attempts: int) -> dict:
        """The server's problem_check (graded), from the problem's XBlock handler: one question."""
        hexid = self.course.hex["problem"][problem]
        usage = self.course.usage_key("problem", problem)
        answer_id = f"{hexid}_2_1"
        correctness = "correct" if grade else "incorrect"
        choice = f"choice_{choice_index}"
        correct_map = {answer_id: {"answervariable": None, "correctness": correctness, "hint": "", "hintmode": None,
                                   "msg": "", "npoints": None, "queuestate": None}}
        return {"answers": {answer_id: choice}, "attempts": attempts, "correct_map": correct_map,
                "grade": grade, "max_grade": 1, "problem_id": usage,
                "state": {"correct_map": correct_map, "done": True, "has_saved_answers": False,
                          "input_state": {answer_id: {}}, "seed": 1, "student_answers": {answer_id: choice}},
                "submission": {answer_id: {"answer": f"answer {choice[-1]}", "correct": bool(grade),
                                           "group_label": "", "input_type": "choicegroup",
                                           "question": f"Question {problem + 1}", "response_type": "multiplechoiceresponse",
                                           "variant": ""}},
                "success": correctness}


def _org(course_id: str) -> str:
    # course-v1:ORG+COURSE+RUN
    body = course_id.split(":", 1)[-1]
    return body.split("+", 1)[0] if "+" in body else ""
