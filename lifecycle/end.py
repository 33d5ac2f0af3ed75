"""The end of a run: one owner (this module's only `quitting` listener) fires its phases in one order.

    load finished     → `load_finished`: the users are stopped; generators close their senders and
                         record what they sent.
    pipeline draining → `pipeline_draining`: wait until what was sent has gone through (the monitor
                         samples until every backlog is 0 or --drain-timeout; without a monitor, a
                         generator waits for its own end-to-end check).
    pipeline drained  → `pipeline_drained`: take the last measurements (the tracking run's
                         end-to-end summary).
    run measured      → `run_measured`: every measurement is in: write the final figures
                         (stats.json) and judge the checks (`check_failed`).
    quitting          → `run_ending(environment, exit_code, end_row, meta)`: the exit code is
                         decided: store the end row and the final metadata row (their fields are
                         given, lifecycle.run), stop recordings, close sinks.

Every listener takes `environment` (keyword) and may be registered in any order: listeners of one
phase do not depend on each other, and a later phase sees everything an earlier one did. The
phases run once per run, in every process (master, worker, local), when Locust quits, or at the
next test start from the web UI; listeners check their role (e.g. a worker's runner).

Signals: a run quitting while its users still run was stopped by Ctrl-C or SIGTERM before its
planned end (--run-time, a shape or a budget stop the users first): exit 130/143, unless a signal
is the run's planned end (`expect_signal_end`). With workers (--processes, --master/--worker):
- a master's runner stops itself in its own `quitting` listener, which fires before this module's
  (`quitting` fires in reverse order of registration): the master notes the signal from a listener
  added after its runner's, while the users still run;
- the signal of a terminal or `kill -- -PGID` reaches the workers too, and they may quit first:
  Locust's master then stops the test when its last worker quits ("The last worker quit, stopping
  test."), before its own signal is handled, or without one (only the workers got it). So a worker
  quitting on a signal while its users run says so to the master first (a custom message, sent before
  Locust's own `quit`), and a test that stops because its last worker quit that way was interrupted;
- a headless master still waiting for --expect-workers quits on either signal (one line, 130/143),
  telling the workers already connected to quit: Locust has no handler of its own there yet.
"""

from __future__ import annotations

import logging
import signal
from dataclasses import dataclass, field
from typing import Any

import gevent
from locust import events
from locust.event import EventHook
from locust.runners import STATE_INIT, STATE_RUNNING, STATE_SPAWNING, MasterRunner, WorkerRunner

from lifecycle import checks, processes
from lifecycle import run as identity
from lifecycle.exit_codes import INTERRUPTED, ExitCode
from plumbing import run_state

log = logging.getLogger("lifecycle")

load_finished = EventHook()
pipeline_draining = EventHook()
pipeline_drained = EventHook()
run_measured = EventHook()
run_ending = EventHook()
# A test starts (master or local runner; from the web UI, each test is a run of its own):
# listeners (the monitor) take `environment`, `run_id`, `start` (the start row's fields) and `meta`
# (the metadata row's fields).
run_started = EventHook()
# A row of the run besides its start and end (e.g. `phase`, `capacity`): listeners (the monitor)
# store it; listeners take `environment`, `event_type` and `extra`.
run_event = EventHook()

INTERRUPTED_MESSAGE = "lifecycle_interrupted"  # worker -> master: a signal stopped me while my users ran

PHASES = ("load_finished", "pipeline_draining", "pipeline_drained", "run_measured", "run_ending")


@dataclass
class RunEnd:
    """The end of this process's current run (plumbing.run_state)."""

    started: bool = False  # a test started since the last end
    ended: bool = False
    ends_by_signal: bool = False  # a signal is the planned end (tracking --run-until-killed)
    sigterm_received: bool = False
    sigint_received: bool = False  # Python's handler still raises KeyboardInterrupt after noting it
    worker_signal: str = ""  # master: the signal a worker reported quitting on while this run's users ran
    interrupted: str = ""  # the signal that stopped the run before its planned end
    failed: dict[ExitCode, str] = field(default_factory=dict)  # checks that failed: code -> why
    exit_code: int | None = None  # once decided
    ending: Any = None  # the greenlet firing the end's phases
    quit_waiting: str = ""  # a headless master quit on this signal while it waited for its workers
    extras: dict = field(default_factory=dict)  # add_run_extra: fields of the end row and metadata
    start_fields: dict = field(default_factory=dict)  # describe_run: fields of the start row (kept across tests)


def _state(environment) -> RunEnd:
    return run_state.of(environment, RunEnd)


# -- API -------------------------------------------------------------------------------------------
def expect_signal_end(environment, yes: bool = True) -> None:
    """A signal is this run's planned end (e.g. tracking --run-until-killed, as Aspects' command):
    quitting on one is no interruption (no exit 130/143)."""
    _state(environment).ends_by_signal = yes


def interrupted(environment) -> str:
    """The signal ("SIGINT", "SIGTERM") that stopped the run before its planned end, or ""."""
    return _state(environment).interrupted


def check_failed(environment, code: ExitCode, why: str) -> None:
    """A check failed (logged); the run exits with the first failed code of ExitCode's order
    (the monitor's crash first: its figures are incomplete), unless it was interrupted."""
    log.error("check failed: %s", why)
    _state(environment).failed.setdefault(code, why)


def record_run_event(environment, event_type: str, extra: dict) -> None:
    """A row of load_test_runs besides start/end (e.g. `phase`, `capacity`), stored with the run."""
    run_event.fire(environment=environment, event_type=event_type, extra=extra)


def add_run_extra(environment, **fields) -> None:
    """Fields merged into the `end` row's extra and the run metadata (e.g. sent_event_count)."""
    _state(environment).extras.update(fields)


def extras(environment) -> dict:
    """The fields added with add_run_extra for this run so far."""
    return dict(_state(environment).extras)


def describe_run(environment, **fields) -> None:
    """Fields added to the run's `start` row (e.g. the tracking run's course id); call before test start."""
    _state(environment).start_fields.update(fields)


def start_fields(environment) -> dict:
    return dict(_state(environment).start_fields)


def ended(environment) -> bool:
    """True once the current run's end has been fired (its exit code is decided)."""
    return _state(environment).ended


def end(environment) -> int:
    """End the current run: fire the phases in order, decide and return the exit code (once)."""
    run = _state(environment)
    if run.ended:
        # A second quit while the end runs (SIGTERM during the drain: Locust's handler quits again, then
        # exits) waits for it: the end rows are written once, whole, and the code is the run's.
        while run.exit_code is None and run.ending is not None and run.ending is not gevent.getcurrent():
            gevent.sleep(0.05)
        return run.exit_code if run.exit_code is not None else 0
    run.ended, run.ending = True, gevent.getcurrent()
    _note_interruption(environment)
    runner = environment.runner
    if runner is not None and not isinstance(runner, WorkerRunner) and runner.state in (STATE_SPAWNING,
                                                                                        STATE_RUNNING):
        runner.stop()  # quitting without a stop (a signal): the users stop first
    load_finished.fire(environment=environment)
    pipeline_draining.fire(environment=environment)
    pipeline_drained.fire(environment=environment)
    run_measured.fire(environment=environment)
    if not isinstance(runner, WorkerRunner):
        checks.judge(environment, check_failed)
    for line in processes.run_ending(bool(run.interrupted)):
        run.failed.setdefault(ExitCode.WORKER_DIED, line)
    run.exit_code = code = _decide(environment)
    drain = checks.drain(environment)
    run_ending.fire(environment=environment, exit_code=code,
                    end_row=identity.end_row(run.extras, drain, code, bool(run.interrupted)),
                    meta=identity.end_meta(environment, run.extras, drain, code))
    return code


def _decide(environment) -> int:
    run = _state(environment)
    if run.interrupted:
        environment.process_exit_code = INTERRUPTED[run.interrupted].value
    elif run.failed:
        first = next((c for c in (ExitCode.WORKER_DIED, ExitCode.MONITOR_CRASH) if c in run.failed), min(run.failed))
        environment.process_exit_code = first.value
    if environment.process_exit_code is not None:
        return environment.process_exit_code
    runner = environment.runner
    return ExitCode.ERRORS.value if runner is not None and (runner.errors or runner.exceptions) else ExitCode.OK.value


def _note_interruption(environment) -> None:
    """Quitting while users still run: a signal stopped the run before its planned end. Say so."""
    runner, run = environment.runner, _state(environment)
    if runner is None or isinstance(runner, WorkerRunner) or run.interrupted or run.ends_by_signal:
        return
    if runner.state not in (STATE_SPAWNING, STATE_RUNNING):
        return
    gevent.sleep(0)  # the SIGTERM watcher's greenlet, spawned beside Locust's handler, runs now
    _interrupt(run, "SIGTERM" if run.sigterm_received else "SIGINT")


def _interrupt(run: RunEnd, name: str) -> None:
    run.interrupted = name
    log.warning("run stopped by %s before its planned end; exit code %d", name, INTERRUPTED[name])


# -- Workers: a signal that reached them first ------------------------------------------------------
def _note_sigint(environment) -> None:
    """Note SIGINT as it arrives, then let Python raise KeyboardInterrupt as before (Locust quits on it).

    Python raises it in whatever greenlet runs when the signal lands. In the main greenlet or the hub
    it reaches Locust's main as Locust expects; in another greenlet (a worker's message loop handling
    the master's spawn) it would kill that greenlet, and Locust ends a run whose runner greenlet died
    with exit code 2, an error. There it is raised from the hub's next callback instead, which gevent
    hands to the main greenlet."""
    previous = signal.getsignal(signal.SIGINT)
    if not callable(previous):
        return  # ignored (SIG_IGN) or not Python's: nothing of ours to add

    def noted(signum: int, frame: Any) -> None:
        _signalled(environment, "SIGINT")
        if _waiting_for_workers(environment) or _state(environment).quit_waiting:
            gevent.spawn(_quit_waiting, environment, "SIGINT")
            return
        hub, current = gevent.get_hub(), gevent.getcurrent()
        if current is hub or current is hub.parent:
            previous(signum, frame)
        else:
            hub.loop.run_callback(previous, signum, None)

    signal.signal(signal.SIGINT, noted)


def _signalled(environment, name: str) -> None:
    """A signal arrived: on a master or a local runner whose users run, the run is interrupted by it,
    decided now (by the time Locust fires `quitting` it may have stopped the users itself: a headless
    shape such as a capacity search ends on KeyboardInterrupt, then quits, before `quitting`)."""
    run, runner = _state(environment), environment.runner
    setattr(run, "sigterm_received" if name == "SIGTERM" else "sigint_received", True)
    if runner is None or isinstance(runner, WorkerRunner) or run.interrupted or run.ended or run.ends_by_signal:
        return
    if runner.state in (STATE_SPAWNING, STATE_RUNNING):
        _interrupt(run, name)


def _waiting_for_workers(environment) -> bool:
    """A headless master before its test starts: Locust's main is still waiting for --expect-workers,
    with no handler of its own for SIGTERM yet and none for Ctrl-C (a traceback, workers left running)."""
    runner, o = environment.runner, environment.parsed_options
    return isinstance(runner, MasterRunner) and bool(getattr(o, "headless", False)) and runner.state == STATE_INIT


def _quit_waiting(environment, name: str) -> None:
    """Quit a master still waiting for its workers: the connected workers are told to quit, no run
    started (nothing to end), and the exit code is the signal's. SystemExit from a greenlet reaches the
    main greenlet through gevent's hub, silently."""
    runner, code, run = environment.runner, INTERRUPTED[name].value, _state(environment)
    if run.quit_waiting:
        return  # a second signal (or libev's second report of it) while the first quits
    run.quit_waiting = name
    log.warning("%s while waiting for workers (%d of %d ready): no run started; exit code %d", name,
                len(runner.clients.ready), getattr(environment.parsed_options, "expect_workers", 0) or 0, code)
    runner.quit()
    raise SystemExit(code)


def _on_sigterm(environment) -> None:
    if _waiting_for_workers(environment) or _state(environment).quit_waiting:
        _quit_waiting(environment, "SIGTERM")
        return
    _signalled(environment, "SIGTERM")
    runner, o = environment.runner, environment.parsed_options
    # Locust installs its own SIGTERM handler only once a headless shape has run its course (its main
    # joins the shape first): until then SIGTERM would be noted here and nothing else, and the run
    # would go on. Stop the shape as Locust's handler would stop the run; Locust then quits as usual.
    if (environment.shape_class is not None and getattr(o, "headless", False) and runner is not None
            and not isinstance(runner, WorkerRunner) and runner.state in (STATE_SPAWNING, STATE_RUNNING)):
        runner.stop()


def _worker_quitting(environment, **_kw) -> None:
    """A worker quitting while its users run because of a signal tells its master, before Locust's own
    `quit` message (this listener is added after the runner's and `quitting` fires in reverse)."""
    runner, run = environment.runner, _state(environment)
    if not isinstance(runner, WorkerRunner) or runner.state not in (STATE_SPAWNING, STATE_RUNNING):
        return  # the master stopped it first (the run's planned end), or no test runs
    gevent.sleep(0)  # the SIGTERM watcher's greenlet, spawned beside Locust's handler, runs now
    name = "SIGTERM" if run.sigterm_received else "SIGINT" if run.sigint_received else ""
    if name:
        runner.send_message(INTERRUPTED_MESSAGE, name)


def _master_quitting(environment, **_kw) -> None:
    _note_interruption(environment)


def _worker_interrupted(environment, msg, **_kw) -> None:
    """Master: a worker quit on a signal while the run's users ran; if the last worker goes that way,
    the run was stopped by that signal (`_test_stopping`)."""
    runner, run = environment.runner, _state(environment)
    if (msg.data in INTERRUPTED and not run.ended and not run.ends_by_signal
            and runner.state in (STATE_SPAWNING, STATE_RUNNING)):
        run.worker_signal = run.worker_signal or msg.data


# -- Locust's events -------------------------------------------------------------------------------
@events.init_command_line_parser.add_listener
def _parser(parser, **_kw) -> None:
    """Locust parses its options before it forks its workers (--processes): watch them from their fork."""
    processes.watch_forks()


@events.init.add_listener
def _init(environment, **_kw) -> None:
    """Note SIGTERM and SIGINT as they arrive (Locust ends both alike in `quitting`): a second SIGTERM
    watcher beside Locust's own handler (libev runs every watcher of a signal); SIGINT noted before
    Python's handler raises KeyboardInterrupt as before. A worker tells its master."""
    gevent.signal_handler(signal.SIGTERM, _on_sigterm, environment)
    _note_sigint(environment)
    runner = environment.runner
    if isinstance(runner, WorkerRunner):
        environment.events.quitting.add_listener(_worker_quitting)
    elif isinstance(runner, MasterRunner):
        runner.register_message(INTERRUPTED_MESSAGE, _worker_interrupted)
        # The master's runner stops itself in its own `quitting` listener, before lifecycle's `_quitting`
        # (they fire in reverse): note a signal while its users still run, from a listener added after it.
        environment.events.quitting.add_listener(_master_quitting)
    o = environment.parsed_options
    processes.init(isinstance(environment.runner, MasterRunner) and bool(getattr(o, "processes", None)))


@events.test_start.add_listener
def _test_start(environment, **_kw) -> None:
    """A new test from the web UI ends the previous run first (its end rows, its figures), then
    the new run starts: its id, its start and metadata rows (`run_started`)."""
    state = _state(environment)
    if state.started and not state.ended:
        end(environment)
    state.started, state.ended, state.interrupted, state.failed, state.exit_code, state.extras = (
        True, False, "", {}, None, {})
    state.worker_signal = ""
    processes.run_started()
    if not isinstance(environment.runner, WorkerRunner):
        run_started.fire(environment=environment, run_id=identity.new_id(environment),
                         start=identity.start_row(environment, start_fields(environment)),
                         meta=identity.meta(environment))


@events.test_stopping.add_listener
def _test_stopping(environment, **_kw) -> None:
    """The workers are told to quit after this (a headless run's end): their exits are no deaths. A
    test stopping because its last worker quit on a signal was interrupted by that signal."""
    runner, run = environment.runner, _state(environment)
    if isinstance(runner, MasterRunner):
        if run.worker_signal and runner.worker_count <= 0 and not run.interrupted and not run.ended:
            _interrupt(run, run.worker_signal)
        processes.run_stopping()


@events.quitting.add_listener
def _quitting(environment, **_kw) -> None:
    end(environment)
