"""The generator's tracking events as the real event-routing-backends (ERB 9.3.8) transforms them.

ERB runs in this process through openedx_erb (minimal Django settings; stand-ins only for the three
edx-platform modules ERB's own tests stand in for). No test here imports Locust.
"""

from __future__ import annotations

import collections
import json
import re
import subprocess
import sys

import pytest

import openedx_erb
from openedx_erb import wire
from openedx_erb.events import LMS_ROOT_URL, MIXES, REALISTIC_MIX, EventFactory, TrackedLearner
from plumbing import chclient
from tests.helpers import REPO, log_of, wait_for

COURSE = "course-v1:OEX+erb123+2024-1"
ENROLLMENT = ("edx.course.enrollment.activated", "edx.course.enrollment.deactivated")
NAMES = {"enrollment": set(ENROLLMENT),
         "realistic": {n for n in REALISTIC_MIX if n != "enrollment"} | set(ENROLLMENT)}

# The keys the LMS puts in each event's context and data: those of ERB's own fixture for the event
# (event_routing_backends/processors/tests/fixtures/current/<name>.json at v9.3.8; problem_check is
# the server's "problem_check(server)" fixture, the graded one).
BROWSER_CONTEXT = {"accept_language", "agent", "client_id", "course_id", "event_source", "host", "ip", "org_id",
                   "page", "path", "referer", "session", "user_id", "username"}
SERVER_CONTEXT = {"accept_language", "agent", "client_id", "course_id", "host", "ip", "org_id", "path", "referer",
                  "session", "user_id", "username"}
LMS_FIELDS = {
    "play_video": (BROWSER_CONTEXT, {"code", "currentTime", "duration", "id"}),
    "pause_video": (BROWSER_CONTEXT, {"code", "currentTime", "duration", "id"}),
    "edx.ui.lms.sequence.next_selected": (BROWSER_CONTEXT, {"current_tab", "id", "tab_count", "widget_placement"}),
    "problem_check": (SERVER_CONTEXT | {"asides", "course_user_tags", "event_source", "module", "page"},
                      {"answers", "attempts", "correct_map", "grade", "max_grade", "problem_id", "state", "submission",
                       "success"}),
    "edx.course.enrollment.activated": (SERVER_CONTEXT, {"course_id", "mode", "user_id"}),
    "edx.course.enrollment.deactivated": (SERVER_CONTEXT, {"course_id", "mode", "user_id"}),
    "edx.course.grade.passed.first_time": (SERVER_CONTEXT, {"course_id", "user_id"}),
}

# ERB's verb and object for each event name (its expected fixtures), with this suite's course.
BLOCK = rf"{re.escape(LMS_ROOT_URL)}/xblock/block-v1:OEX\+erb123\+2024-1\+type@{{kind}}\+block@[0-9a-f]{{{{32}}}}"
COURSE_IRI = re.escape(f"{LMS_ROOT_URL}/course/{COURSE}")
ERB_VERB_AND_OBJECT = {
    "play_video": ("https://w3id.org/xapi/video/verbs/played", BLOCK.format(kind="video")),
    "pause_video": ("https://w3id.org/xapi/video/verbs/paused", BLOCK.format(kind="video")),
    "problem_check": ("https://w3id.org/xapi/acrossx/verbs/evaluated", BLOCK.format(kind="problem")),
    "edx.ui.lms.sequence.next_selected": ("https://w3id.org/xapi/dod-isd/verbs/navigated",
                                          BLOCK.format(kind="sequential")),
    "edx.course.enrollment.activated": ("http://adlnet.gov/expapi/verbs/registered", COURSE_IRI),
    "edx.course.enrollment.deactivated": ("http://id.tincanapi.com/verb/unregistered", COURSE_IRI),
    "edx.course.grade.passed.first_time": ("http://adlnet.gov/expapi/verbs/passed", COURSE_IRI),
}


def events(mix: str, n: int, learners: int = 200) -> list[dict]:
    factory = EventFactory(COURSE, mix)
    pool = [TrackedLearner(i, f"lt__{i:06d}") for i in range(1, learners + 1)]
    return [factory.next_event(pool[i % learners]) for i in range(n)]


def one_of_each(mix: str = "realistic") -> dict[str, dict]:
    first: dict[str, dict] = {}
    for e in events(mix, 2000):
        first.setdefault(e["name"], e)
    return first


@pytest.mark.parametrize("mix", MIXES)
def test_every_event_of_every_mix_transforms_in_erb(mix):
    sent = events(mix, 3000)
    transformed: collections.Counter = collections.Counter()
    failures: dict[str, str] = {}
    for e in sent:
        try:
            assert len(openedx_erb.statements(e)) == 1  # one question per problem: one statement
            transformed[e["name"]] += 1
        except openedx_erb.NotTransformable as exc:
            failures.setdefault(e["name"], str(exc))
    by_name = collections.Counter(e["name"] for e in sent)
    assert set(by_name) == NAMES[mix]
    assert transformed == by_name, failures  # 100 % of every event name


@pytest.mark.parametrize("name", sorted(LMS_FIELDS))
def test_each_event_carries_the_fields_the_lms_puts_in_it(name):
    e = one_of_each()[name]
    context_keys, data_keys = LMS_FIELDS[name]
    assert set(e) == {"name", "timestamp", "data", "context"}
    assert (set(e["context"]), set(e["data"])) == (context_keys, data_keys)


def test_video_events_carry_the_bare_block_id_as_the_player_sends_it():
    for name in ("play_video", "pause_video"):
        e = one_of_each()[name]
        assert re.fullmatch(r"[0-9a-f]{32}", e["data"]["id"]), e["data"]


def test_a_browser_events_page_names_its_unit_as_the_courseware_does():
    e = one_of_each()["edx.ui.lms.sequence.next_selected"]
    assert e["context"]["referer"] == e["context"]["page"]
    assert e["context"]["page"].startswith(f"{LMS_ROOT_URL}/courses/{COURSE}/courseware/")
    assert "?activate_block_id=block-v1%3AOEX%2Berb123%2B2024-1%2Btype%40sequential%2Bblock%40" in e["context"]["page"]


@pytest.mark.parametrize("name", sorted(ERB_VERB_AND_OBJECT))
def test_erb_gives_each_event_its_verb_and_object(name):
    verb, object_id = ERB_VERB_AND_OBJECT[name]
    (st,) = openedx_erb.statements(one_of_each()[name])
    assert st["verb"]["id"] == verb
    assert re.fullmatch(object_id, st["object"]["id"]), st["object"]["id"]
    assert st["context"]["extensions"]["https://w3id.org/xapi/openedx/extension/transformer-version"] == \
        "event-routing-backends@9.3.8"


def test_problem_check_results_carry_erbs_score():
    e = one_of_each()["problem_check"]
    (st,) = openedx_erb.statements(e)
    assert st["result"]["score"] == {"min": 0.0, "max": 1.0, "raw": float(e["data"]["grade"]),
                                     "scaled": float(e["data"]["grade"])}
    assert st["result"]["success"] is (e["data"]["success"] == "correct")


def test_statement_ids_are_erbs_a_replay_gives_the_same_id():
    e = one_of_each()["play_video"]
    (first,) = openedx_erb.statements(e)
    (again,) = openedx_erb.statements(json.loads(json.dumps(e)))
    (later,) = openedx_erb.statements({**e, "timestamp": e["timestamp"].replace("+00:00", "1+00:00")})
    assert first == again and first["id"] != later["id"]


def test_an_event_erb_has_no_transformer_for_is_refused():
    with pytest.raises(openedx_erb.NotTransformable, match="no xAPI transformer for event 'edx.nothing'"):
        openedx_erb.statements({"name": "edx.nothing", "timestamp": "2026-01-01T00:00:00+00:00", "data": {},
                                "context": {}})


def test_the_generator_modules_import_without_locust():
    code = ("import sys, openedx_erb, openedx_erb.events, openedx_erb.wire; openedx_erb.setup(); "
            "print(sorted(m for m in sys.modules if m.split('.')[0] == 'locust'))")
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0 and out.stdout.strip() == "[]", log_of(out.stderr)


def test_the_reference_pipeline_stores_erbs_statements(pipeline, clickhouse, redis_server):
    import redis

    p = pipeline("redis_bus", "--batch-size", "100", "--batch-interval", "1")
    sent = events("realistic", 600)
    bad = {"name": "problem_check", "timestamp": "2026-01-01T00:00:00+00:00", "data": {}, "context": {}}
    r = redis.Redis.from_url(redis_server.url)
    for e in sent[:300] + [bad] + sent[300:]:  # ERB refuses the bad one; the rest of its batch goes on
        r.xadd(f"{p.prefix}-analytics", wire.redis_bus_fields(e))
    client = chclient.connect(clickhouse.url)

    def rows() -> list[tuple]:
        try:
            return client.execute(f"SELECT event_id, event FROM {p.db}.xapi_events_all")
        except Exception:  # noqa: BLE001 - the pipeline creates the table on start
            return []

    wait_for(lambda: len(rows()) >= len(sent), timeout=120, what="600 statements in ClickHouse")
    stored = {str(i): json.loads(body) for i, body in rows()}
    client.disconnect()
    expected = {st["id"]: st for e in sent for st in openedx_erb.statements(e)}
    assert len(stored) == len(expected) == len(sent)
    assert {i: (s["verb"]["id"], s["object"]["id"]) for i, s in stored.items()} == \
        {i: (s["verb"]["id"], s["object"]["id"]) for i, s in expected.items()}
    assert stored == expected  # whole statements: the pipeline stores what ERB makes
