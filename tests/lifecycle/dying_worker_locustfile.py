"""A locustfile for tests/lifecycle: the run's owner (lifecycle.end) loaded; with DIE_ONCE=PATH, the
first worker process to create PATH dies at its init (a one-line option error, as a bad per-process
setting would), the others run; users report requests without a server. Each end phase logs `phase NAME on ROLE
(exit code N, interrupted B)`, and each `quitting` logs `quitting on ROLE`; with HOLD_END=PATH the master's drain waits until PATH exists (a
signal can then reach the run during its end); with BUSY_WORKER=DIR each worker, once every user is spawned,
handles a message from the master by computing (it creates DIR/busy-PID) until DIR/release exists (a signal
then lands in the worker's message greenlet, not in its main one)."""

import logging
import os
import time

import gevent
from locust import User, constant, events, task
from locust.runners import MasterRunner, WorkerRunner

import lifecycle.end  # the run's end and its exit code
from plumbing.options import OptionError

log = logging.getLogger("probe")


def _role(environment) -> str:
    runner = environment.runner
    return "master" if isinstance(runner, MasterRunner) else "worker" if isinstance(runner, WorkerRunner) else "local"


def _probe(name: str):
    def probe(environment, exit_code=None, end_row=None, **_kw) -> None:
        how = f" (exit code {exit_code}, interrupted {end_row['interrupted']})" if end_row is not None else ""
        log.info("phase %s on %s%s", name, _role(environment), how)
        hold = os.environ.get("HOLD_END")
        if name == "pipeline_draining" and hold and isinstance(environment.runner, MasterRunner):
            while not os.path.exists(hold):  # the test polls for this line, then releases the drain
                gevent.sleep(0.05)

    return probe


for _phase in lifecycle.end.PHASES:
    getattr(lifecycle.end, _phase).add_listener(_probe(_phase))


@events.quitting.add_listener
def _quitting(environment, **_kw) -> None:
    log.info("quitting on %s", _role(environment))  # before lifecycle's end: `quitting` fires in reverse


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


@events.init.add_listener
def _busy_worker(environment, **_kw) -> None:
    where = os.environ.get("BUSY_WORKER")
    runner = environment.runner
    if not where:
        return
    if isinstance(runner, WorkerRunner):
        def busy(environment, msg, **_kw) -> None:
            open(os.path.join(where, f"busy-{os.getpid()}"), "w").close()
            while not os.path.exists(os.path.join(where, "release")):
                pass  # no yield: the signal's handler runs in this greenlet

        runner.register_message("probe_busy", busy)
    elif isinstance(runner, MasterRunner):
        environment.events.spawning_complete.add_listener(lambda **_kw: runner.send_message("probe_busy"))


class Reporter(User):
    wait_time = constant(0.05)

    @task
    def work(self) -> None:
        self.environment.events.request.fire(request_type="TEST", name="work", response_time=1.0, response_length=0,
                                             exception=None, context={}, start_time=time.time())
