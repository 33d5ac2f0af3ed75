"""Open-model load in Locust: the arrival options, one scheduler per generator and process, dropped
iterations as a Locust stat, and the --check-min-rate exit code. See docs/open-model.md.

A locustfile makes an `OpenModel` at test start with its target rate (over all processes); its
users call `open_model.attach(user, model)` from on_start (their wait_time then takes instants) and
read each iteration's instant with `open_model.begin(user)` as their task begins. The plan starts
when spawning is complete and the users are ready (k6 pre-allocates its users the same way), on
every worker at one wall-clock instant sent by the master, so the workers' instants interleave.
Each iteration's planned instant is `ticket.wall` (time.time()), put into its requests' context as
`planned_start`.
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field

import gevent
from locust import events
from locust.exception import StopUser
from locust.runners import MasterRunner, WorkerRunner

from generators.arrival import EVEN, POISSON, LivePlan, Plan, RateProfile, Scheduler, Ticket, parse_stages
from lifecycle import budget, end
from lifecycle.end import add_run_extra
from lifecycle.exit_codes import ExitCode
from monitors import clocks
from plumbing import run_state
from plumbing.bulk_stats import add_to_entry
from plumbing.options import OptionError, fraction, positive_float, require
from plumbing.request_context import PLANNED_START  # where an iteration's planned instant goes

log = logging.getLogger("open_model")

DROPPED = "DROPPED"  # request type of the dropped-iterations row, named by generator
START_DELAY = 0.2  # s between the master's start message and the plan's start on the workers
# Most seconds the plan waits by default, after spawning, for users still in on_start (devices
# connecting, learners logging in); then it starts without them (their instants may be dropped) and says so.
READY_TIMEOUT = 60.0
READY_POLL = 0.05  # s between looks at how many users are ready


@dataclass
class OpenModelRun:
    """This process's open-model state for one run (plumbing.run_state)."""

    stages: list = field(default_factory=list)  # --rate-stages, parsed
    models: list[OpenModel] = field(default_factory=list)  # every generator's, in this process
    start_at: float | None = None  # the plan's wall-clock start, once known
    expected_reports: int = 0  # on the master: workers that will send their figures
    reports: dict[int, dict] = field(default_factory=dict)  # on the master: worker index -> figures
    attached: int = 0  # users of this process that reached attach() (left on_start) in this test
    ready_workers: set = field(default_factory=set)  # on the master: workers whose users are ready
    waiting: gevent.Greenlet | None = None  # waits for the users to be ready, then starts the plan


@events.init_command_line_parser.add_listener
def _options(parser) -> None:
    g = parser.add_argument_group("open model (arrival rate)")
    g.add_argument("--rate-stages", default="", env_var="LOCUST_RATE_STAGES",
                   help="ramp the arrival rate: RATE:DURATION,… (e.g. 100:30s,1000:60s), each rate reached "
                        "linearly from the previous one (the first from the generator's rate option, or 0), "
                        "the last held until the run ends (k6 ramping-arrival-rate)")
    g.add_argument("--arrival", default=EVEN, choices=(EVEN, POISSON), env_var="LOCUST_ARRIVAL",
                   help="instants evenly spaced (default) or a Poisson process")
    g.add_argument("--arrival-seed", type=int, default=None, env_var="LOCUST_ARRIVAL_SEED",
                   help="seed of the Poisson instants (default: a new plan each run)")
    g.add_argument("--arrival-ready-timeout", type=positive_float, default=READY_TIMEOUT,
                   env_var="LOCUST_ARRIVAL_READY_TIMEOUT",
                   help="after spawning, wait at most this many seconds for users still in on_start (devices "
                        "connecting, learners logging in) before the plan starts (default %(default)g)")
    g.add_argument("--check-min-rate", type=fraction, default=None, env_var="LOCUST_CHECK_MIN_RATE",
                   help=f"exit {ExitCode.MIN_RATE.value} if any iteration was dropped or the achieved arrival rate is "
                        "short of the target by more than this fraction (e.g. 0.01)")


@events.init.add_listener
def _init(environment, runner=None, **_kw) -> None:
    o = environment.parsed_options
    if o is None:
        return
    run = run_state.reset(environment, OpenModelRun)
    try:
        run.stages = parse_stages(o.rate_stages) if o.rate_stages else []
    except ValueError as exc:
        raise OptionError(str(exc)) from None
    require(all(s.rate >= 0 for s in run.stages), f"--rate-stages {o.rate_stages!r}: expected rates >= 0")
    # spawning_complete passes no environment: bind it here.
    environment.events.spawning_complete.add_listener(lambda **_k: _spawned(environment))
    if isinstance(runner, MasterRunner):
        runner.register_message("open_model_summary", _worker_summary)
        runner.register_message("open_model_ready",
                                lambda environment, msg, **_k: run_state.of(environment, OpenModelRun)
                                .ready_workers.add(msg.data))
    elif isinstance(runner, WorkerRunner):
        runner.register_message("open_model_start", _start_at)
        runner.register_message("open_model_rate", lambda environment, msg, **_k: _set_rate_here(environment, **msg.data))


def enabled(environment, rate: float) -> bool:
    """True when a generator with this rate option runs the open model (a rate or --rate-stages)."""
    return rate > 0 or bool(run_state.of(environment, OpenModelRun).stages)


process_share = budget.process_share  # (index, count) of this process among the load-generating ones


@dataclass
class OpenModel:
    """One generator's plan and scheduler in this process; drops are a DROPPED row named `name`."""

    environment: object
    name: str
    rate: float  # over all processes: the constant rate, or where --rate-stages starts
    limit_total: int | None = None  # iterations over all processes (e.g. --num-events)
    live: bool = False  # the rate is set while the run lasts (set_rate: a capacity search)
    per_user: bool = False  # every user takes its instants with attach(): the plan waits for them

    def __post_init__(self) -> None:
        env, o = self.environment, self.environment.parsed_options
        self.index, self.count = process_share(env)
        limit = None if self.limit_total is None else budget.share(self.limit_total, self.index, self.count)
        run = run_state.of(env, OpenModelRun)
        if self.live:
            self.plan = LivePlan(self.rate, self.index, self.count, o.arrival, o.arrival_seed)
        else:
            profile = RateProfile(self.rate, run.stages)
            self.plan = Plan(profile, self.index, self.count, o.arrival, o.arrival_seed, limit, self.limit_total)
        # Only the DROPPED row counts a drop (made at the first one): the Aggregated total stays the
        # requests really sent.
        self.scheduler = Scheduler(self.plan, on_drop=lambda n: _count_drops(env, self.name, n))
        run.models.append(self)
        if run.start_at is not None:  # the start message came first (a generator made at spawn)
            self.scheduler.start(run.start_at)


def _count_drops(environment, name: str, n: int) -> None:
    """n more requests of the DROPPED row `name` (time 0, not in the Aggregated total), added at once."""
    entry = environment.stats.get(name, DROPPED)
    entry.log(0, 0)
    if n > 1:
        add_to_entry(entry, [0.0] * (n - 1), Counter({0: n - 1}))


def for_users(environment, name: str, rate: float) -> OpenModel | None:
    """At test start: this process's OpenModel when the open model is on (None on the master);
    its users find it with `named(environment, name)`."""
    if isinstance(environment.runner, MasterRunner) or not enabled(environment, rate):
        return None
    return OpenModel(environment, name, rate, per_user=True)


def named(environment, name: str) -> OpenModel | None:
    """This run's generator `name` in this process; None in the closed model (and on the master)."""
    return next((m for m in run_state.of(environment, OpenModelRun).models if m.name == name), None)


def attach(user, model: OpenModel | None) -> None:
    """From on_start: pace `user` by the plan (wait_time takes instants; every request's context gets
    the iteration's planned instant through User.context()) and wait for its first instant.
    The task reads its instant with begin(user). Nothing happens in the closed model (model None)."""
    if model is None:
        return
    # ticket_begins: the task calls begin(), so its instants start there (until then, and for a task
    # that never does, an instant starts when wait_time hands it over).
    user.ticket, user.ticket_begun, user.ticket_begins, user.ticket_model = None, True, False, model
    user.wait_time = lambda: wait_for_ticket(user, model)
    user.context = lambda: context_of(user.ticket)
    user_stop = user.on_stop

    def on_stop() -> None:
        if not user.ticket_begun:  # killed in the yield between its wait_time and its task
            user.ticket_begun = True
            model.scheduler.release(user.ticket)
        user_stop()

    user.on_stop = on_stop
    run_state.of(user.environment, OpenModelRun).attached += 1  # ready: the plan may start
    first_ticket(user, model)


def wait_for_ticket(user, model: OpenModel) -> float:
    """A user's wait_time() in the open model: block (in Locust's waiting state, so a stopping run
    kills it cleanly) until the scheduler hands over an instant, keep it as `user.ticket`, return 0.
    No instant left (the plan is over): the user stops. A task that calls begin() starts its instant
    there: Locust yields once before the task, and a stop that runs there leaves the instant out."""
    if not user.ticket_begun:  # the last task did not read its instant, yet it ran
        _start(user)
        user.ticket_begins = False
    defer = user.ticket_begins
    ticket = model.scheduler.acquire(defer=defer)
    if ticket is None:
        raise StopUser()
    user.ticket, user.ticket_begun = ticket, not defer
    return 0.0


def begin(user) -> Ticket | None:
    """First thing in a task: the iteration's instant, which starts now (None in the closed model, or
    when the run stopped before the task began: the task then stops its user)."""
    if getattr(user, "ticket_model", None) is None:
        return None
    user.ticket_begins = True
    if not user.ticket_begun:
        _start(user)
    return user.ticket


def _start(user) -> None:
    user.ticket_begun = True
    if not user.ticket_model.scheduler.begin(user.ticket):
        user.ticket = None


def first_ticket(user, model: OpenModel) -> None:
    """From on_start: wait (killable) for the first iteration's instant; `user.ticket` is None when
    the plan is already over (the task then stops the user: StopUser from on_start logs an error)."""
    user.ticket = None
    try:
        user.wait()
    except StopUser:
        user.ticket = None


def wait_until_planned_sent(model: OpenModel, sent: Callable[[], int]) -> bool:
    """Block until the plan ran out and every instant taken was sent (`sent()` reaches the started
    count); False when the run stopped first. A generator with a budget then finishes by itself."""
    sch = model.scheduler
    sch.finished.wait()
    if not sch.exhausted:
        return False
    while sent() < sch.started:  # the last iterations taken are still sending
        gevent.sleep(0.005)
    return True


def set_rate(environment, name: str, rate: float, ramp: float = 0.0) -> float:
    """Ramp the live generator `name` to `rate` (over all processes) in `ramp` s, starting at one
    wall-clock instant in every process (the master sends it to its workers); returns that instant."""
    runner = environment.runner
    at = time.time() + (START_DELAY if isinstance(runner, MasterRunner) else 0.0)
    if isinstance(runner, MasterRunner):
        runner.send_message("open_model_rate", {"name": name, "rate": rate, "ramp": ramp, "at": at})
    else:
        _set_rate_here(environment, name, rate, ramp, at)
    return at


def _set_rate_here(environment, name: str, rate: float, ramp: float, at: float) -> None:
    for m in run_state.of(environment, OpenModelRun).models:
        if m.name == name and isinstance(m.plan, LivePlan):
            start = m.scheduler.start_wall
            m.plan.set_rate(rate, at - start if start is not None else 0.0, ramp)


def context_of(ticket: Ticket | None) -> dict:
    """A request context holding the iteration's planned instant (empty in the closed model)."""
    return {} if ticket is None else {PLANNED_START: ticket.wall}


# -- start, stop, figures --------------------------------------------------------------------------
@events.test_start.add_listener
def _test_start(environment, **_kw) -> None:
    run = run_state.of(environment, OpenModelRun)  # the stages stay: options hold for every test
    if run.waiting is not None:
        run.waiting.kill(block=False)
    run.models, run.reports, run.start_at, run.attached, run.ready_workers, run.waiting = [], {}, None, 0, set(), None
    runner = environment.runner
    if isinstance(runner, MasterRunner):
        run.expected_reports = runner.worker_count


def _spawned(environment) -> None:
    runner, run = environment.runner, run_state.of(environment, OpenModelRun)
    if run.start_at is not None or run.waiting is not None:
        return  # a later spawn (a shape, the web UI) changes nothing
    if isinstance(runner, WorkerRunner):  # the master starts the plan once every worker is ready
        index = runner.worker_index
        run.waiting = gevent.spawn(_when_ready, environment, lambda: runner.send_message("open_model_ready", index))
    elif isinstance(runner, MasterRunner):
        run.waiting = gevent.spawn(_master_start, environment)
    else:
        run.waiting = gevent.spawn(_when_ready, environment, lambda: _start_plans(environment, time.time()))


def _users_ready(environment) -> bool:
    """This process's users have all left on_start for attach(), when a generator's users take instants
    one by one (for_users); always, otherwise."""
    run = run_state.of(environment, OpenModelRun)
    if not any(m.per_user for m in run.models):
        return True
    return run.attached >= environment.runner.user_count


def _ready_timeout(environment) -> float:
    o = environment.parsed_options
    return o.arrival_ready_timeout if o is not None else READY_TIMEOUT


def _wait_until(ready: Callable[[], bool], timeout: float) -> bool:
    """Poll `ready` every READY_POLL s for at most `timeout` s; True when it became true."""
    deadline = time.monotonic() + timeout
    while not ready():
        if time.monotonic() >= deadline:
            return False
        gevent.sleep(READY_POLL)
    return True


def _when_ready(environment, then: Callable[[], None]) -> None:
    timeout = _ready_timeout(environment)
    if not _wait_until(lambda: _users_ready(environment), timeout):
        run = run_state.of(environment, OpenModelRun)
        log.warning("open model: %d of %d users were still in on_start after %g s; the plan starts "
                    "without them (instants no user is free for are dropped)",
                    environment.runner.user_count - run.attached, environment.runner.user_count, timeout)
    then()


def _master_start(environment) -> None:
    runner, run = environment.runner, run_state.of(environment, OpenModelRun)
    _wait_until(lambda: len(run.ready_workers) >= runner.worker_count, _ready_timeout(environment) + START_DELAY)
    at = time.time() + START_DELAY
    runner.send_message("open_model_start", at)
    _start_plans(environment, at)


def _start_plans(environment, at: float) -> None:
    run = run_state.of(environment, OpenModelRun)
    run.start_at = at
    for m in run.models:
        m.scheduler.start(at)


def _start_at(environment, msg, **_kw) -> None:
    run = run_state.of(environment, OpenModelRun)
    # The master's instant on this worker's clock (another host's may be off by seconds).
    run.start_at = float(msg.data) - clocks.worker_offset(environment)
    for m in run.models:
        m.scheduler.start(run.start_at)


@events.test_stopping.add_listener
def _stopping(environment, **_kw) -> None:
    run = run_state.of(environment, OpenModelRun)
    if run.waiting is not None and run.start_at is None:
        run.waiting.kill(block=False)  # stopped before the users were ready: no plan starts
    for m in run.models:
        m.scheduler.stop()


def summary(models: list[OpenModel]) -> dict | None:
    """The figures of this process's generators, summed."""
    if not models:
        return None
    parts = [m.scheduler.summary() for m in models]
    return {"planned": sum(p["planned"] for p in parts), "started": sum(p["started"] for p in parts),
            "dropped": sum(p["dropped"] for p in parts), "duration_s": max(p["duration_s"] for p in parts),
            "start_wall": min((p["start_wall"] for p in parts if p["start_wall"] is not None), default=None),
            "scheduler_lateness_max_ms": max(p["scheduler_lateness_max_ms"] for p in parts)}


@events.test_stop.add_listener
def _test_stop(environment, **_kw) -> None:
    models = run_state.of(environment, OpenModelRun).models
    for m in models:
        m.scheduler.stop()
    mine = summary(models)
    if mine is None:
        return
    runner = environment.runner
    if isinstance(runner, WorkerRunner):
        runner.send_message("open_model_summary", {"index": runner.worker_index, **mine})
        gevent.sleep(0)


def _worker_summary(environment, msg, **_kw) -> None:
    run_state.of(environment, OpenModelRun).reports[msg.data["index"]] = msg.data


def total(environment) -> dict | None:
    """This run's open-model figures over all processes (on the master: the workers' reports)."""
    run = run_state.of(environment, OpenModelRun)
    if isinstance(environment.runner, MasterRunner):
        # Each worker reports at its test stop; the master may get to the run's end first.
        deadline = time.monotonic() + 5
        while len(run.reports) < run.expected_reports and time.monotonic() < deadline:
            gevent.sleep(0.05)
        reports = list(run.reports.values())
        if not reports:
            return None
        s = {k: sum(r[k] for r in reports) for k in ("planned", "started", "dropped")}
        s["duration_s"] = max(r["duration_s"] for r in reports)
        s["start_wall"] = min((r["start_wall"] for r in reports if r["start_wall"] is not None), default=None)
        s["scheduler_lateness_max_ms"] = max(r["scheduler_lateness_max_ms"] for r in reports)
        s["processes"] = len(reports)
        s["planned_per_process"] = [run.reports[i]["planned"] for i in sorted(run.reports)]  # the split, by worker index
    else:
        s = summary(run.models)
        if s is None:
            return None
        s["processes"] = 1
    d = s["duration_s"]
    s["target_rate"] = round(s["planned"] / d, 3) if d > 0 else 0.0
    s["achieved_rate"] = round(s["started"] / d, 3) if d > 0 else 0.0
    return s


def summary_line(s: dict) -> str:
    line = (f"open model: planned {s['planned']:,}, started {s['started']:,}, dropped {s['dropped']:,} over "
            f"{s['duration_s']:.1f} s: achieved {s['achieved_rate']:,.1f}/s of a target {s['target_rate']:,.1f}/s")
    if s["dropped"]:
        line += (f"; the generator is the limit: {s['dropped']:,} iterations found no free user "
                 f"(raise -u, or add --processes if the CPU is saturated; the scheduler woke up to "
                 f"{s['scheduler_lateness_max_ms']:,.0f} ms late)")
    return line


@end.run_measured.add_listener
def _measured(environment, **_kw) -> None:
    if isinstance(environment.runner, WorkerRunner):
        return
    s = total(environment)
    if s is None:
        return
    (log.warning if s["dropped"] else log.info)(summary_line(s))
    add_run_extra(environment, open_model=s)
    tol = environment.parsed_options.check_min_rate if environment.parsed_options else None
    if tol is None:
        return
    short = s["target_rate"] > 0 and s["achieved_rate"] < (1 - tol) * s["target_rate"]
    if s["dropped"] or short:
        end.check_failed(environment, ExitCode.MIN_RATE,
                         f"achieved {s['achieved_rate']:.1f}/s of a target {s['target_rate']:.1f}/s, "
                         f"{s['dropped']} dropped (--check-min-rate {tol:g})")
