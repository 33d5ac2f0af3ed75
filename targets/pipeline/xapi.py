"""Tracking event → xAPI statement, following event-routing-backends' rules for the generator's mix.

Verbs, object types, the actor's account and the deterministic statement id are ERB's:
``id = uuid5(uuid5(NAMESPACE_DNS, verb_json), f"{actor_json}-{timestamp}")`` so a replayed
event gives the same statement and ReplacingMergeTree keeps one copy. The anonymous actor id is
a uuid5 of the username here (ERB looks up an ExternalId in the LMS database).
"""

from __future__ import annotations

import json
import uuid

LMS_ROOT_URL = "http://lms.loadtest.invalid"
TRANSFORMER_VERSION = "event-routing-backends@10.0.0"
_NS = uuid.UUID("6ba7b810-9dad-11d1-80b4-00c04fd430c8")

VERBS = {
    "edx.course.enrollment.activated": ("http://adlnet.gov/expapi/verbs/registered", "registered"),
    "edx.course.enrollment.mode_changed": ("http://adlnet.gov/expapi/verbs/registered", "registered"),
    "edx.course.enrollment.deactivated": ("http://id.tincanapi.com/verb/unregistered", "unregistered"),
    "play_video": ("https://w3id.org/xapi/video/verbs/played", "played"),
    "pause_video": ("https://w3id.org/xapi/video/verbs/paused", "paused"),
    "problem_check": ("https://w3id.org/xapi/acrossx/verbs/evaluated", "evaluated"),
    "edx.ui.lms.sequence.next_selected": ("https://w3id.org/xapi/dod-isd/verbs/navigated", "navigated"),
    "edx.course.grade.passed.first_time": ("http://adlnet.gov/expapi/verbs/passed", "passed"),
}


class UnknownEvent(ValueError):
    pass


def _dumps(obj) -> str:
    return json.dumps(obj, separators=(",", ":"), sort_keys=True)


def statement_id(verb: dict, actor: dict, timestamp: str) -> str:
    return str(uuid.uuid5(uuid.uuid5(_NS, _dumps(verb)), f"{_dumps(actor)}-{timestamp}"))


def transform(event: dict) -> dict:
    """The xAPI statement for one tracking event (dict form: name, timestamp, data, context)."""
    name = event["name"]
    if name not in VERBS:
        raise UnknownEvent(f"no xAPI transformer for event {name!r}")
    data = event.get("data") or {}
    if isinstance(data, str):
        data = json.loads(data or "{}")
    context = event.get("context") or {}
    if isinstance(context, str):
        context = json.loads(context or "{}")
    course_id = context.get("course_id") or data.get("course_id") or ""
    username = context.get("username") or str(data.get("user_id", ""))
    verb_iri, display = VERBS[name]
    verb = {"id": verb_iri, "display": {"en": display}}
    actor = {"objectType": "Agent", "account": {"homePage": LMS_ROOT_URL,
                                                "name": str(uuid.uuid5(_NS, f"xapi:{username}"))}}
    course_iri = f"{LMS_ROOT_URL}/course/{course_id}"
    if name.startswith("edx.course.enrollment."):
        obj = {"objectType": "Activity", "id": course_iri,
               "definition": {"type": "http://adlnet.gov/expapi/activities/course", "name": {"en": course_id},
                              "extensions": {"https://w3id.org/xapi/acrossx/extensions/type": data.get("mode", "audit")}}}
        ctx = {}
    elif name == "edx.course.grade.passed.first_time":
        obj = {"objectType": "Activity", "id": course_iri,
               "definition": {"type": "http://adlnet.gov/expapi/activities/course"}}
        ctx = {}
    else:
        block = data.get("id") or data.get("problem_id") or ""
        kind = ("https://w3id.org/xapi/video/activity-type/video" if "video" in name else
                "http://adlnet.gov/expapi/activities/cmi.interaction" if name == "problem_check" else
                "http://adlnet.gov/expapi/activities/module")
        obj = {"objectType": "Activity", "id": f"{LMS_ROOT_URL}/xblock/{block}", "definition": {"type": kind}}
        ctx = {"contextActivities": {"parent": [{"id": course_iri, "objectType": "Activity",
                                                 "definition": {"type": "http://adlnet.gov/expapi/activities/course"}}]}}
    ctx["extensions"] = {"https://w3id.org/xapi/openedx/extension/transformer-version": TRANSFORMER_VERSION}
    statement = {
        "id": statement_id(verb, actor, event["timestamp"]),
        "actor": actor,
        "verb": verb,
        "object": obj,
        "context": ctx,
        "timestamp": event["timestamp"],
        "version": "1.0.3",
    }
    if name == "problem_check":
        statement["result"] = {"score": {"raw": data.get("grade", 0), "max": data.get("max_grade", 1)},
                               "success": data.get("success") == "correct"}
    return statement
