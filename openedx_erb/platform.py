"""The three edx-platform modules event-routing-backends imports, for running it outside the LMS.

ERB's own tests stand in for exactly these (its test_utils): external user ids, course overviews
and the retired-user lookup. Here they answer as an LMS whose learners and courses all exist:
- a learner's xAPI id is stable (uuid5 of the user), where the LMS stores a random uuid4 once;
- a course's display name is "Course <course>", as Aspects' load test names its courses;
- every user looked up exists (the LMS database is not here), with an @openedx.invalid email.
"""

from __future__ import annotations

import sys
import types
import uuid
from dataclasses import dataclass

_NAMESPACE = uuid.UUID("2a6e8c1e-5f0b-4c55-9a3e-6f1d4b7c0e11")  # this suite's, so ids never collide with an LMS's

EXTERNAL_USER_IDS = "openedx.core.djangoapps.external_user_ids.models"
COURSE_OVERVIEWS = "openedx.core.djangoapps.content.course_overviews.api"
STUDENT_MODELS = "common.djangoapps.student.models"


@dataclass(frozen=True)
class ExternalIdRecord:
    external_user_id: uuid.UUID


class ExternalIdType:
    XAPI = "xapi"
    CALIPER = "caliper"
    LTI = "lti"


class ExternalId:
    @staticmethod
    def add_new_user_id(user, type_name: str) -> tuple[ExternalIdRecord, bool]:
        """edx-platform's signature: (the user's id of that type, created?)."""
        return ExternalIdRecord(external_xapi_id(str(user.username), type_name)), False


def external_xapi_id(username: str, type_name: str = ExternalIdType.XAPI) -> uuid.UUID:
    return uuid.uuid5(_NAMESPACE, f"{type_name}:{username}")


def get_course_overviews(course_keys) -> list[dict]:
    """edx-platform returns CourseOverview rows as dicts; ERB reads `display_name`."""
    return [{"id": str(key), "display_name": f"Course {key.course}"} for key in course_keys]


def get_potentially_retired_user_by_username(username):
    from django.contrib.auth import get_user_model

    name = str(username)
    return get_user_model()(username=name, email=f"{name}@openedx.invalid")


def install() -> None:
    """Put the three modules into sys.modules unless a real edx-platform provides them."""
    for name, attrs in ((EXTERNAL_USER_IDS, {"ExternalId": ExternalId, "ExternalIdType": ExternalIdType}),
                        (COURSE_OVERVIEWS, {"get_course_overviews": get_course_overviews}),
                        (STUDENT_MODELS, {"get_potentially_retired_user_by_username":
                                          get_potentially_retired_user_by_username})):
        if name in sys.modules:
            continue
        module = types.ModuleType(name, f"Stand-in for edx-platform's {name} (openedx_erb.platform).")
        module.__dict__.update(attrs)
        sys.modules[name] = module
