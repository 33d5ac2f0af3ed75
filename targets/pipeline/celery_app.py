"""The Celery path: a real Celery worker running `eventtracking.tasks.send_event`.

    celery -A targets.pipeline.celery_app worker -Q edx.lms.core.default,edx.cms.core.default -P threads -c 2

Configured by environment: PIPELINE_BROKER_URL (the LMS's Celery broker), PIPELINE_REDIS_URL
(ERB's batch lists; default: the broker), PIPELINE_CLICKHOUSE_URL, PIPELINE_XAPI_DATABASE,
PIPELINE_XAPI_TABLE, PIPELINE_BATCH_SIZE (100), PIPELINE_BATCH_INTERVAL (5 s).
"""

from __future__ import annotations

import os

from celery import Celery
from celery.signals import worker_ready, worker_shutdown, worker_shutting_down

from plumbing import settings
from targets.pipeline.router import Router, Store

BROKER = os.environ.get("PIPELINE_BROKER_URL", settings.REDIS_URL.default)
app = Celery("lms", broker=BROKER)
app.conf.update(task_serializer="json", accept_content=["json"], worker_prefetch_multiplier=1,
                task_acks_late=False, broker_connection_retry_on_startup=True, worker_hijack_root_logger=False)

router = Router(
    os.environ.get("PIPELINE_REDIS_URL", BROKER),
    Store(os.environ.get("PIPELINE_CLICKHOUSE_URL", settings.CLICKHOUSE_URL.default),
          os.environ.get("PIPELINE_XAPI_DATABASE", settings.XAPI_DATABASE.default),
          os.environ.get("PIPELINE_XAPI_TABLE", settings.XAPI_TABLE.default)),
    batch_size=int(os.environ.get("PIPELINE_BATCH_SIZE", "100")),
    batch_interval=float(os.environ.get("PIPELINE_BATCH_INTERVAL", "5")),
    backend_name=os.environ.get("PIPELINE_BACKEND_NAME", "xapi"),
)


@app.task(name="eventtracking.tasks.send_event", max_retries=3, default_retry_delay=30)
def send_event(backend_name: str, event: dict) -> None:
    """eventtracking's task: hand the processed event to the routing backend (ERB's batching)."""
    router.queue_events([event])


@worker_ready.connect
def _start(**_kw) -> None:
    router.store.ensure_table()
    router.start_timer()
    ready = os.environ.get("PIPELINE_READY_FILE")
    if ready:
        open(ready, "w").close()


@worker_shutting_down.connect
def _stopping(**_kw) -> None:
    """SIGTERM: a task retrying a dead ClickHouse gives up now, so Celery's warm shutdown ends."""
    router.stopping.set()


@worker_shutdown.connect
def _stop(**_kw) -> None:
    router.stop()
