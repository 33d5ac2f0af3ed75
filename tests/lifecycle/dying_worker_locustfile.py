"""A locustfile for tests/lifecycle: the run's owner (lifecycle.end) loaded; with DIE_ONCE=PATH, the
first worker process to create PATH dies at its init (a one-line option error, as a bad per-process
setting would), the others run; users report requests without a server."""

import os
import time

from locust import User, constant, events, task
from locust.runners import WorkerRunner

import lifecycle.end  # noqa: F401 - the run's end and its exit code
from plumbing.options import OptionError


@events.init.add_listener
def _die_once(environment, **_kw) -> None:
    marker = os.environ.get("DIE_ONCE")
    if not marker or not isinstance(environment.runner, WorkerRunner):
        return
    try:
        os.close(os.open(marker, os.O_CREAT | os.O_EXCL))
    except FileExistsError:
        return  # another worker died already
    raise OptionError(f"this worker process ({os.getpid()}) was told to die at its init")


class Reporter(User):
    wait_time = constant(0.05)

    @task
    def work(self) -> None:
        self.environment.events.request.fire(request_type="TEST", name="work", response_time=1.0, response_length=0,
                                             exception=None, context={}, start_time=time.time())
