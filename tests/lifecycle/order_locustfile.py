"""A locustfile for tests/lifecycle: the suite's plugins imported, and probes registered on the run's
phases, in the order LIFECYCLE_ORDER gives (forward or reverse); requests come without a server at
an open-model rate, so the run ends by --run-time with stats.json, the end row and its checks."""

import importlib
import json
import logging
import os
import time

from locust import User, events, task

PLUGINS = ["monitors.locust_plugin", "loadtesting.locust_plugin", "generators.open_model", "lifecycle.end"]
PHASES = ["run_started", "load_finished", "pipeline_draining", "pipeline_drained", "run_measured", "run_ending"]
REVERSE = os.environ.get("LIFECYCLE_ORDER") == "reverse"

modules = [importlib.import_module(name) for name in (reversed(PLUGINS) if REVERSE else PLUGINS)]
end = importlib.import_module("lifecycle.end")
open_model = importlib.import_module("generators.open_model")
log = logging.getLogger("order")


def _probe(name: str):
    def probe(environment, **kw) -> None:
        log.info("phase %s", name)
        if name == "run_ending":  # lifecycle hands the end row's fields to whoever stores them
            log.info("handed end_row %s", json.dumps(kw["end_row"]))

    return probe


for phase in reversed(PHASES) if REVERSE else PHASES:
    getattr(end, phase).add_listener(_probe(phase))


@events.test_start.add_listener
def _open(environment, **_kw) -> None:
    open_model.for_users(environment, "probe", 20.0)


class Prober(User):
    def on_start(self) -> None:
        open_model.attach(self, open_model.named(self.environment, "probe"))

    @task
    def work(self) -> None:
        self.environment.events.request.fire(request_type="TEST", name="work", response_time=1.0, response_length=0,
                                             exception=None, context={}, start_time=time.time())
