"""The tracking generator (its entry point is locustfiles/tracking.py): Open edX tracking events into
an analytics pipeline, with a per-event end-to-end check.

Options mirror `load_test_tracking_events` (--num-users, --username-prefix, --num-events,
--run-until-killed, --sleep-time; its --tags is Locust's --run-tags here, since Locust's own
--tags selects tasks) and add an open-model --events-per-second, --course-id, --users-file and
--event-mix. Events enter where --pipeline-backend says, in that pipeline's wire format; each
send is an EVENT request named by event name. Every stored xAPI statement is matched to its event
in ClickHouse (an E2E row outside Aggregated: event time → first seen in the xAPI table), and the run ends with
sent, stored, missing, duplicates, latency percentiles and the storage runway.

Here: the options, the per-process `Generator` (learners, events, sender, budget, pacing) that the
entry point's users call, the end-to-end check, and their part in the run's life (init, test start,
the end's phases).
"""

from __future__ import annotations

import argparse
import logging
import random
import time
import uuid
from dataclasses import dataclass, field

import gevent
from gevent.lock import Semaphore
from locust import events
from locust.exception import StopUser
from locust.runners import MasterRunner, WorkerRunner

import backends
import loadtesting.locust_plugin  # capacity search, sar capture, phases
import monitors.locust_plugin  # noqa: F401  - pipeline monitor, ClickHouse sink, thresholds
from backends.base import REQUEST_TYPE
from generators import open_model
from lifecycle import budget, end
from lifecycle.end import add_run_extra, describe_run, expect_signal_end
from lifecycle.run import run_id
from loadtesting import capacity, rate_capacity
from monitors import clocks
from monitors import e2e as e2e_rows
from monitors.clickhouse import XapiTable
from monitors.locust_plugin import add_sampler, drain_timeout, measuring
from monitors.xapi_e2e import EndToEnd, summary_line
from openedx_erb.events import MIXES, Clock, EventFactory, TrackedLearner, generated_users, load_users
from plumbing import run_state, web_options
from plumbing.options import OptionError, non_negative_float, non_negative_int, positive_float, positive_int
from plumbing.web_options import per_test

log = logging.getLogger("tracking")
loadtesting.locust_plugin.generates_rate()  # --capacity-search searches events/s
E2E_NAME = "tracking event → xAPI in ClickHouse"


@dataclass
class TrackingRun:
    """This process's tracking state for one run (plumbing.run_state)."""

    users: list[tuple[int, str]] = field(default_factory=list)  # (user id, username) of the learners
    generator: Generator | None = None  # not on a master
    e2e: EndToEnd | None = None  # the end-to-end check (master or local runner)
    e2e_greenlet: gevent.Greenlet | None = None
    capacity: loadtesting.locust_plugin.RateTarget | None = None  # --capacity-search: what the search steps


def course_key(text: str) -> str:
    """`type=` of --course-id: a course run key, course-v1:ORG+COURSE+RUN ("": a new one per run)."""
    if text and not (text.startswith("course-v1:") and text.count("+") == 2):
        raise argparse.ArgumentTypeError(f"{text!r}: expected course-v1:ORG+COURSE+RUN")
    return text


@events.init_command_line_parser.add_listener
def _options(parser) -> None:
    g = parser.add_argument_group("tracking events (load_test_tracking_events)")
    per_test(g.add_argument("--pipeline-backend", default="redis_bus", choices=backends.NAMES,
                   metavar="PIPELINE_BACKEND", env_var="LOCUST_PIPELINE_BACKEND",
                   help=f"where events enter: {', '.join(backends.NAMES)} (default %(default)s)"))
    # dest differs: Locust's own -u/--users is stored as num_users.
    g.add_argument("--num-users", type=positive_int, default=100, dest="learners", env_var="LOCUST_TRACKING_NUM_USERS",
                   help="learners the events are about (default %(default)s; --users-file gives real ones)")
    g.add_argument("--username-prefix", default="lt_", env_var="LOCUST_USERNAME_PREFIX",
                   help="prefix of generated learner names, used as given: lt_000000, lt_000001 … (default %(default)s)")
    g.add_argument("--users-file", default="", env_var="LOCUST_USERS_FILE",
                   help="CSV of user_id,username that exist in your Open edX (instead of generated learners)")
    per_test(g.add_argument("--num-events", type=positive_int, default=1000, env_var="LOCUST_NUM_EVENTS",
                   help="events to send over all users and processes, then stop (default %(default)s)"))
    g.add_argument("--run-until-killed", action="store_true", default=False, env_var="LOCUST_RUN_UNTIL_KILLED",
                   help="ignore --num-events: send until Ctrl-C, SIGTERM or --run-time")
    g.add_argument("--sleep-time", type=non_negative_float, default=0.75, env_var="LOCUST_SLEEP_TIME",
                   help="seconds each user waits between events (default %(default)s, as the reference)")
    per_test(g.add_argument("--events-per-second", type=non_negative_float, default=0.0, env_var="LOCUST_EVENTS_PER_SECOND",
                   help="open model: target events/s over all processes (replaces --sleep-time); events are "
                        "started at planned instants, one a free user takes or dropped and counted "
                        "(docs/open-model.md)"))
    g.add_argument("--course-id", type=course_key, default="", env_var="LOCUST_COURSE_ID",
                   help="course the events name (default: a new course-v1:OEX+<6 hex>+2024-1 per run)")
    per_test(g.add_argument("--event-mix", default="enrollment", choices=MIXES, metavar="EVENT_MIX",
                            env_var="LOCUST_EVENT_MIX",
                   help="enrollment (activated/deactivated toggling, as the reference) or realistic "
                        "(video, problem, navigation, completion and enrollment)"))
    g.add_argument("--e2e-poll-interval", type=positive_float, default=0.5, env_var="LOCUST_E2E_POLL_INTERVAL",
                   help="seconds between looks for stored events; the latency resolution (default %(default)s)")
    g.add_argument("--delivery-timeout", type=non_negative_float, default=30.0, env_var="LOCUST_DELIVERY_TIMEOUT",
                   help="at the end, seconds to wait for the backend to confirm the events in flight (e.g. Kafka "
                        "deliveries); those still unconfirmed then are counted as failed (default %(default)s)")
    g.add_argument("--no-e2e", action="store_true", default=False, env_var="LOCUST_NO_E2E",
                   help="do not match stored statements (e.g. no read access to the xAPI table)")
    g.add_argument("--e2e-timestamp-sql", default="visitParamExtractString(event, 'timestamp')",
                   env_var="LOCUST_E2E_TIMESTAMP_SQL",
                   help="SQL giving a stored statement's timestamp (Ralph's spaced JSON: JSONExtractString(event, "
                        "'timestamp'))")
    g.add_argument("--clickhouse-data-path", default="", env_var="LOCUST_CLICKHOUSE_DATA_PATH",
                   help="ClickHouse's data folder on this machine, for the free-disk runway (default: none)")
    g.add_argument("--tracking-processes", type=non_negative_int, default=0, env_var="LOCUST_TRACKING_PROCESSES",
                   help="worker processes sharing --num-events / --events-per-second with --master/--worker "
                        "(--processes sets it by itself)")
    for backend in backends.modules():
        if hasattr(backend, "add_arguments"):
            backend.add_arguments(g)


# -- checks and per-process state ------------------------------------------------------------------
@events.init.add_listener
def _init(environment, runner=None, **_kw) -> None:
    o = environment.parsed_options
    if o is None:
        return
    for backend in backends.modules():
        if hasattr(backend, "check_options"):
            backend.check_options(o)
    if not o.course_id:
        # One course per run as the reference creates; the master passes it on to its workers.
        o.course_id = f"course-v1:OEX+{uuid.uuid4().hex[:6]}+2024-1"
    run = run_state.of(environment, TrackingRun)
    if not isinstance(runner, WorkerRunner):
        _load_learners(environment)
    # Aspects' mode: sent until killed, so a signal is the planned end, not an interruption.
    expect_signal_end(environment, o.run_until_killed and not o.run_time)
    searching = capacity.searching(o)
    if searching:
        _use_capacity_search(environment, run)
    describe_run(environment, course_id=o.course_id, num_users=len(run.users), username_prefix=o.username_prefix,
                 backend=o.pipeline_backend,
                 num_events=None if o.run_until_killed or searching else o.num_events,
                 events_per_second=o.events_per_second or None)
    if runner is None or not isinstance(runner, MasterRunner | WorkerRunner):
        backends.get(o.pipeline_backend).check_reachable(o)
    if isinstance(runner, WorkerRunner):
        # The master's course (sent before its spawn message, so it arrives before test_start here).
        # Locust passes the handler's arguments by keyword (environment=, msg=).
        runner.register_message("tracking_course", lambda environment, msg, **_k: setattr(
            environment.parsed_options, "course_id", msg.data))


def _load_learners(environment) -> None:
    o = environment.parsed_options
    run = run_state.of(environment, TrackingRun)
    if o.users_file:
        try:
            run.users = load_users(o.users_file)
        except OSError as exc:
            raise OptionError(f"--users-file {o.users_file!r}: {exc.strerror}") from None
        except ValueError as exc:
            raise OptionError(str(exc)) from None
    else:
        run.users = generated_users(o.username_prefix, o.learners)


# What a growing backlog of the backend's sampler means (--monitor-backend): the stage behind it.
BUS_STAGES = {"celery": rate_capacity.CELERY, "redis_bus": rate_capacity.CONSUMERS,
              "kafka_bus": rate_capacity.CONSUMERS, "vector": rate_capacity.CLICKHOUSE}


def _use_capacity_search(environment, run: TrackingRun) -> None:
    """--capacity-search: the arrival rate is searched (events/s), on a live open-model plan."""
    o = environment.parsed_options
    # The search sets the rate and runs until it ends: a fixed run's rate (e.g. conf/tracking.conf's,
    # which users keep beside --capacity-search) is not used, and said so; the web UI's form refuses one.
    if o.events_per_second:
        log.warning("--events-per-second %g is not used: a capacity search sets the rate itself "
                    "(--capacity-start-rate, --capacity-max-rate)", o.events_per_second)
    web_options.fix("events_per_second", o.events_per_second, "a capacity search sets the rate itself "
                    "(--capacity-search: --capacity-start-rate, --capacity-max-rate); leave it at 0")
    web_options.fix("num_events", o.num_events, "a capacity search runs until it ends or is stopped "
                    "(--capacity-search); leave it as it is")

    def stored() -> int:
        return run.e2e.stored if run.e2e is not None else 0

    run.capacity = loadtesting.locust_plugin.RateTarget(
        "tracking events", lambda rate, ramp: open_model.set_rate(environment, "tracking events", rate, ramp),
        REQUEST_TYPE, None if o.no_e2e else stored, o.e2e_poll_interval, "events", BUS_STAGES.get(o.pipeline_backend))
    loadtesting.locust_plugin.use_rate_search(environment, run.capacity)


class Generator:
    """Per-process state: learners, the event factory, the sender, the budget and the pacing."""

    def __init__(self, environment) -> None:
        o = environment.parsed_options
        self.env, self.o = environment, o
        self.index, self.count = budget.process_share(environment, o.tracking_processes)
        self.learners = [TrackedLearner(uid, name) for uid, name in run_state.of(environment, TrackingRun).users]
        self.factory = EventFactory(o.course_id, o.event_mix, Clock(slot=self.index))
        searching = capacity.searching(o)  # the search steps the rate until it is done
        self.budget = None if o.run_until_killed or searching else budget.share(o.num_events, self.index, self.count)
        self.sent = self.reserved = 0
        self.started = time.monotonic()
        self.finishing = False
        self.finished_at: float | None = None
        self.sender = backends.get(o.pipeline_backend).sender(environment, o)
        # The event as the sender takes it: a bus sender the encoded form, made without building dicts.
        self.next_event = self.factory.next_tracking_log if self.sender.takes_tracking_log else self.factory.next_event
        self.model: open_model.OpenModel | None = None
        if searching:
            self.model = open_model.OpenModel(environment, "tracking events", rate_capacity.start_rate(o), live=True)
        elif open_model.enabled(environment, o.events_per_second):
            # The plan holds this process's share of --num-events: each is sent or dropped.
            self.model = open_model.OpenModel(environment, "tracking events", o.events_per_second,
                                              None if o.run_until_killed else o.num_events)
            gevent.spawn(self._finish_when_planned)
        self.turn = Semaphore()  # the user taking the due instants (open model)

    def pause(self) -> float:
        """A user's wait between events: --sleep-time in the closed model; none in the open model (the
        plan paces it, and a queueing sender's users wait their turn in send_due)."""
        return 0.0 if self.model is not None else self.o.sleep_time

    def take(self) -> bool:
        """Reserve one event of the budget. Reserving before sending matters: a send yields to the
        other users, and checking `sent` instead would let several of them pass the last slot."""
        if self.budget is not None and self.reserved >= self.budget:
            return False
        self.reserved += 1
        return True

    def send_due(self) -> None:
        """Open model: send the plan's events until it is over. At each wake-up take every instant due
        (at least the next one, waited for) and queue its event: one wake-up of the loop starts all
        the instants of its turn, each event with its own planned instant. One user at a time does
        this (the others wait their turn, the pool's reserve), so the events leave in plan order and
        no task loop or hand-over runs per instant. Queueing events is not being busy: the instants
        that come meanwhile are taken at the next turn (late, from their planned instant). A full
        sender is: the instants that come while it is full find no idle user and are dropped and
        counted."""
        sender, scheduler = self.sender, self.model.scheduler
        idle_since = time.monotonic()  # waiting for its turn is being idle: instants due meanwhile are its own
        with self.turn:
            while True:
                tickets = scheduler.acquire_due(max(sender.room(), 1), idle_since)
                if not tickets:
                    raise StopUser()
                for ticket in tickets:
                    self.send_one(ticket)
                # Idle from its last instant on (a process the OS set aside between the take and here
                # must not drop the next ones), unless its sender was full.
                idle_since = time.monotonic() if sender.wait_for_room() else tickets[-1].at

    def send_one(self, ticket=None) -> None:
        learner = self.learners[int(random.random() * len(self.learners))]  # with replacement, as the reference
        self.sender.send(self.next_event(learner), None if ticket is None else ticket.wall)
        self.sent += 1
        if self.model is None and self.budget is not None and self.sent >= self.budget and not self.finishing:
            self.finishing, self.finished_at = True, time.monotonic()
            gevent.spawn(self.finish)

    def _finish_when_planned(self) -> None:
        """Open model: the plan ran out (every event of the budget sent or dropped) -> finish."""
        if open_model.wait_until_planned_sent(self.model, lambda: self.sent) and not self.finishing:
            self.finishing, self.finished_at = True, time.monotonic()
            self.finish()

    def achieved_rate(self) -> float:
        if self.model is not None:
            return self.model.scheduler.summary()["achieved_rate"]
        end = self.finished_at or time.monotonic()
        return self.sent / max(end - self.started, 1e-9)

    def finish(self) -> None:
        deadline = time.monotonic() + self.o.delivery_timeout
        while self.sender.outstanding() and time.monotonic() < deadline:
            gevent.sleep(0.01)
        log.info("tracking: %d events sent by this process (%.0f/s)%s", self.sent, self.achieved_rate(),
                 f", {self.model.scheduler.dropped} dropped" if self.model is not None else "")
        # The monitor and the E2E check drain, then the run's end writes the end row.
        budget.spent(self.env, "tracking", sent=self.sent)


def generator(environment) -> Generator | None:
    """This process's generator for the run (None on a master, or before the test starts)."""
    return run_state.of(environment, TrackingRun).generator


def _sent_total(environment) -> int:
    return sum(e.num_requests - e.num_failures for (_n, m), e in environment.stats.entries.items()
               if m == REQUEST_TYPE)


@events.test_start.add_listener
def _start(environment, **_kw) -> None:
    o = environment.parsed_options
    runner = environment.runner
    if isinstance(runner, MasterRunner):
        runner.send_message("tracking_course", o.course_id)
    if isinstance(runner, WorkerRunner):
        # A worker knows the run's options (its learners, where the bus is) only from the master's
        # spawn message, which comes just before this: its own defaults point at its own loopback.
        _load_learners(environment)
        backends.get(o.pipeline_backend).check_reachable(o)
    if not isinstance(runner, MasterRunner):
        try:
            run_state.of(environment, TrackingRun).generator = Generator(environment)
        except Exception as exc:  # noqa: BLE001 - a bad URL or unreachable broker: one line
            raise OptionError(f"--pipeline-backend {o.pipeline_backend}: {exc}") from None
    if isinstance(runner, WorkerRunner) or o.no_e2e:
        return
    _start_e2e(environment)


def _start_e2e(environment) -> None:
    o = environment.parsed_options

    target = run_state.of(environment, TrackingRun).capacity

    def latency(ms: float) -> None:
        if target is not None:
            target.observe_latency(ms)
        e2e_rows.record(environment, E2E_NAME, ms)  # its own row: Aggregated holds the events sent

    xapi = XapiTable.from_options(o)  # the monitor's --xapi-* options
    e2e = EndToEnd(xapi.url, xapi.database, xapi.table, time.time() - 1,
                   lambda: _sent_total(environment), o.e2e_poll_interval, o.course_id, xapi.time_column,
                   o.e2e_timestamp_sql, o.clickhouse_data_path, latency,
                   clock_offsets=lambda: clocks.offsets(environment))
    run = run_state.of(environment, TrackingRun)
    run.e2e = e2e

    def loop() -> None:
        while True:
            e2e.poll()
            gevent.sleep(o.e2e_poll_interval)

    run.e2e_greenlet = gevent.spawn(loop)
    add_sampler(environment, "e2e", e2e)  # its "missing" is a backlog: the monitor drains until it is 0


def _e2e_summary(environment) -> None:
    """After the drain: the run's sent/stored/missing/duplicates/latency, logged and stored with the end row."""
    run = run_state.of(environment, TrackingRun)
    e2e = run.e2e
    with e2e.lock:  # the polling loop is between polls: stop it there, not inside a query
        run.e2e_greenlet.kill(block=True)
    e2e.poll()
    summary = e2e.summary(with_runway=True)
    log.info(summary_line(run_id(environment), summary))
    add_run_extra(environment, sent_event_count=summary["sent"], e2e=summary)


@end.pipeline_drained.add_listener
def _drained(environment, **_kw) -> None:
    if run_state.of(environment, TrackingRun).e2e is not None:
        _e2e_summary(environment)


@end.load_finished.add_listener
def _load_finished(environment, **_kw) -> None:
    run = run_state.of(environment, TrackingRun)
    if run.e2e is not None:
        run.e2e.load_stopped = time.time()
    gen = run.generator
    if gen is not None:
        gen.sender.close(gen.o.delivery_timeout)
        if not isinstance(environment.runner, WorkerRunner):  # a worker's extras do not reach the master
            add_run_extra(environment, events_per_second_achieved=round(gen.achieved_rate(), 1))
        # Open model: the rate achieved and the drops are logged and stored by generators.open_model.
    if run.e2e is None and gen is not None:
        add_run_extra(environment, sent_event_count=_sent_total(environment))


@end.pipeline_draining.add_listener
def _draining(environment, **_kw) -> None:
    """Without a monitor (--no-monitor), wait here for the E2E check, bounded like the monitor's drain
    (with one, the E2E check's "missing" is a backlog the monitor drains)."""
    e2e = run_state.of(environment, TrackingRun).e2e
    if e2e is None or measuring(environment):
        return
    deadline = time.monotonic() + drain_timeout(environment)
    while e2e.summary()["missing"] and time.monotonic() < deadline:
        gevent.sleep(e2e.poll_interval)
