"""Open edX's xAPI transformation: the real event-routing-backends (ERB), outside the LMS.

ERB is a Django app of edx-platform. Standalone it needs Django settings (here: minimal ones, an
in-memory SQLite database for the `User` lookups it makes) and the three edx-platform modules it
imports (openedx_erb.platform, the same three ERB's own tests stand in for). Everything else is
ERB's: the registry picks the transformer by event name, the transformer builds a tincan
`Statement` (its id is ERB's uuid5 over the actor, timestamp and verb), and `to_json()` is what the
LMS logs to `xapi_tracking` and posts to the LRS.

    from openedx_erb import statements
    statements({"name": "play_video", "timestamp": "...", "data": {...}, "context": {...}})  # [dict]
"""

from __future__ import annotations

import json
import sqlite3
import threading

LMS_ROOT_URL = "http://lms.loadtest.invalid"
# One SQLite database in memory per process, shared by its threads (Celery's thread pool).
_DB_URI = "file:openedx_erb?mode=memory&cache=shared"
_lock = threading.Lock()
_ready = False
_keepalive: sqlite3.Connection | None = None


class NotTransformable(ValueError):
    """ERB has no transformer for the event, or its transformer rejected the event."""


def setup(lms_root_url: str = LMS_ROOT_URL) -> None:
    """Configure Django for ERB once per process (a no-op after the first call)."""
    global _ready, _keepalive
    if _ready:
        return
    with _lock:
        if _ready:
            return
        import django
        from django.conf import settings

        from openedx_erb import platform

        platform.install()
        if not settings.configured:
            settings.configure(
                DATABASES={"default": {"ENGINE": "django.db.backends.sqlite3", "NAME": _DB_URI}},
                INSTALLED_APPS=["django.contrib.auth", "django.contrib.contenttypes", "event_routing_backends"],
                SECRET_KEY="openedx-erb-standalone",  # nothing is signed: ERB needs the setting to exist
                USE_TZ=True,
                LMS_ROOT_URL=lms_root_url,
                XAPI_AGENT_IFI_TYPE="external_id",
                XAPI_EVENTS_ENABLED=True,
                XAPI_EVENT_LOGGING_ENABLED=False,
                EVENT_TRACKING_ENABLED=False,
                EVENT_TRACKING_BACKENDS={},
                LOGGING_CONFIG=None,  # the host process (Locust, Celery, pytest) owns logging
            )
        django.setup()
        # The database lives while a connection to it is open: this one, for the process's life.
        _keepalive = sqlite3.connect(_DB_URI, uri=True, check_same_thread=False)
        from django.core.management import call_command

        call_command("migrate", "auth", verbosity=0, interactive=False)
        _ready = True


def statements(event: dict) -> list[dict]:
    """ERB's xAPI statements for one tracking event {name, timestamp, data, context}.

    One statement per event, except a problem_check answering several questions (a parent and
    one per question, as ERB does). Raises NotTransformable when ERB cannot transform the event.
    """
    return [json.loads(text) for text in statement_texts(event)]


def statement_texts(event: dict) -> list[str]:
    """As `statements`, but the JSON text tincan writes (what the LMS sends on), not parsed."""
    setup()
    from event_routing_backends.processors.xapi.registry import XApiTransformersRegistry
    from eventtracking.processors.exceptions import NoTransformerImplemented

    try:
        result = XApiTransformersRegistry.get_transformer(event).transform()
    except NoTransformerImplemented:
        raise NotTransformable(f"ERB has no xAPI transformer for event {event.get('name')!r}") from None
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        raise NotTransformable(f"{event.get('name')!r}: {type(exc).__name__}: {exc}") from exc
    return [s.to_json() for s in (result if isinstance(result, list) else [result])]
