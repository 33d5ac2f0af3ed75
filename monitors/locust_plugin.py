"""The pipeline monitor inside Locust; every locustfile gets it with `import monitors.locust_plugin`.

On test start (master or local runner, never a worker) a run id is recorded as a `start` row
and a greenlet samples the chosen backends, the host and Locust's stats every
--monitor-interval seconds, logging the key figures and writing them to ClickHouse in batches. On test stop it
keeps sampling until every backlog is 0 or --drain-timeout passes (the drain, or recovery,
time) in the run's `pipeline_draining` phase, and writes the `end` row in its `run_ending` phase
(lifecycle.end owns the run's end, its phases and exit code).

Other parts of the suite use the functions at the end (`run_id`, `record_sample`, `add_run_extra`,
`describe_run`, `add_sampler`, `measuring`); the monitor's state is its own (`MonitorRun`).
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path

import gevent
from locust import events
from locust.event import EventHook
from locust.runners import (
    STATE_MISSING,
    WORKER_REPORT_INTERVAL,
    MasterRunner,
    WorkerRunner,
)
from locust.stats import calculate_response_time_percentile, diff_response_time_dicts

import lifecycle.final_csv  # noqa: F401  - Locust's --csv files with the final figures
from lifecycle import checks, end
from lifecycle.end import (  # noqa: F401 - also found here, their former home
    add_run_extra,
    describe_run,
    expect_signal_end,
    pipeline_drained,
    record_run_event,
    run_measured,
)
from lifecycle.exit_codes import ExitCode
from lifecycle.run import run_id
from monitors import e2e
from monitors import samplers as sampling
from monitors import sink as sinks
from monitors.figures import console_line
from monitors.loop import Sampling, close_all, drain_outcome, store_sample
from monitors.planned import planned_stats
from monitors.sink import Sink
from plumbing import histogram, logs, run_state, settings
from plumbing.options import OptionError, non_negative_float, positive_float
from plumbing.redaction import redact, redact_text
from plumbing.web_options import per_test

log = logging.getLogger("monitors")


REQUEST_STATS_FILE = "request_stats.jsonl"  # in the run folder: the rows of load_test_request_stats
# How long a master's first sample after the stop waits for the workers' last reports: a worker
# reports every WORKER_REPORT_INTERVAL s, and after a web UI stop the next periodic one is its last.
FINAL_REPORT_WAIT = 3 * WORKER_REPORT_INTERVAL



@events.init_command_line_parser.add_listener
def _options(parser) -> None:
    g = parser.add_argument_group("pipeline monitor")
    g.add_argument("--no-monitor", action="store_true", default=False, env_var="LOCUST_NO_MONITOR",
                   help="do not sample or store anything (e.g. a standalone `python -m monitors` runs)")
    sinks.add_target_arguments(g)
    per_test(g.add_argument("--monitor-interval", type=positive_float, default=float(settings.MONITOR_INTERVAL.default),
                   env_var=settings.MONITOR_INTERVAL.env,
                   help="seconds between monitor samples (default %(default)s)"))
    per_test(g.add_argument("--drain-timeout", type=non_negative_float, default=float(settings.DRAIN_TIMEOUT.default),
                   env_var=settings.DRAIN_TIMEOUT.env,
                   help="after the test stops, sample until every backlog is 0 or this many seconds pass"))
    sinks.add_arguments(g)  # --spill-dir and the sink's timeouts
    per_test(g.add_argument("--check-e2e-p95", type=positive_float, default=None, env_var="LOCUST_CHECK_E2E_P95",
                   help=f"exit {ExitCode.E2E_P95.value} if the 95th percentile end-to-end latency (ms, every E2E row "
                        "merged) is above this"))
    sampling.add_arguments(parser)


@events.init.add_listener
def _check_options(environment, runner=None, **_kw) -> None:
    logs.setup()  # Locust has set up logging by now: quiet client libraries, redact every line
    o = environment.parsed_options
    if o is None or o.no_monitor:
        return
    try:
        sampling.chosen(o)
        sampling.timeouts(o, o.monitor_interval)
        sinks.check_target(o)
    except ValueError as exc:
        raise OptionError(str(exc)) from None
    if not isinstance(runner, WorkerRunner):
        # The samplers are built at test start; build them once now so a bad sampler option
        # (e.g. a Redis URL) is a one-line error before the run, not a traceback in test_start.
        try:
            close_all(sampling.build_samplers(o))
        except Exception as exc:  # noqa: BLE001 - ValueError, or a client library's config error
            raise OptionError(redact_text(str(exc))) from None


@dataclass
class Monitor:
    environment: object
    run_id: str
    sink: Sink | None
    samplers: dict
    sleep_time: float
    drain_timeout: float
    results_dir: Path | None
    started: float = field(default_factory=time.time)
    pushed: dict = field(default_factory=dict)  # source -> newest sample from record_sample
    backlog: int | None = None
    stopping_at: float | None = None  # monotonic time the test stopped
    awaiting_reports: set = field(default_factory=set)  # workers whose last report (0 users) is still due
    drained: bool | None = None
    drain_seconds: float | None = None
    drain_unknown: str = ""  # why the drain is unknown (a lag that cannot be measured), if it is
    crashed: bool = False
    finished: bool = False
    greenlet: object = None
    _last_rt: dict = field(default_factory=dict)
    _last_counts: dict = field(default_factory=dict)
    _last_tick: float = field(default_factory=time.monotonic)

    # -- sampling (monitors.loop: the same loop body as `python -m monitors`) ------------------
    def __post_init__(self) -> None:
        o = self.environment.parsed_options
        # The same dict: samplers added later are sampled. Each within its timeout (monitors.loop).
        self.sampling = Sampling(self.samplers, sampling.timeouts(o, self.sleep_time) if o is not None
                                 else {"": self.sleep_time})

    @property
    def max_backlog(self) -> int:
        return self.sampling.max_backlog

    @property
    def sample_errors(self) -> int:
        return self.sampling.errors

    @property
    def latest(self) -> dict:
        return self.sampling.latest

    def tick(self) -> None:
        # Locust's interval is cut first, on time, whatever the samplers take (each within its timeout).
        rows = self._store_request_stats(time.time())
        pushed, self.pushed = self.pushed, {}
        now, stats, self.backlog = self.sampling.take(pushed)
        store_sample(self.sink, self.run_id, now, stats, self.backlog, self.results_dir)
        sampled.fire(environment=self.environment, run_id=self.run_id, time=now, stats=stats,
                     backlogs=self._backlogs(stats), request_rows=rows)
        log.info(console_line(self.run_id, stats, self.backlog, self.stopping_at is not None))
        if self.sink:
            self.sink.wake()  # the sink's writer sends the rows: a hung ClickHouse never holds up the next sample

    def _backlogs(self, stats: dict) -> dict:
        """Each source's own backlog (None: not a queue, or unknown) in this sample."""
        out = {}
        for name, sampler in list(self.samplers.items()):
            sample = stats.get(name)
            try:
                out[name] = sampler.backlog(sample) if isinstance(sample, dict) and "error" not in sample else None
            except Exception:  # noqa: BLE001 - a sample without the figure: no backlog to show
                out[name] = None
        return out

    def _store_request_stats(self, now: float) -> list[dict]:
        env = self.environment
        mono = time.monotonic()
        interval, self._last_tick = max(mono - self._last_tick, 1e-6), mono
        users = env.runner.user_count if env.runner else 0
        # Stamped when the stats are read (no gevent switch in between): every request fired before
        # this instant is in this interval or an earlier one, every later one in a later interval.
        snap = time.time()
        rows = [*self._interval_rows("service", env.stats, snap, interval, users),
                *self._interval_rows("planned", planned_stats(env), snap, interval, users)]
        if self.sink:
            for row in rows:
                self.sink.add("load_test_request_stats", row)
        if self.results_dir and rows:
            # The histograms also go to the run folder: Locust's CSV history has none, and the
            # report falls back to the folder when ClickHouse is unreachable.
            with open(self.results_dir / REQUEST_STATS_FILE, "a") as f:
                f.writelines(json.dumps(row) + "\n" for row in rows)
        return rows

    def _interval_rows(self, timing: str, stats, snap: float, interval: float, users: int) -> list[dict]:
        """One row per request name (and "Aggregated", request_type "") that had requests since the last call."""
        rows = []
        for (name, method), entry in [*stats.entries.items(), (("Aggregated", ""), stats.total)]:
            key = (timing, method, name)
            rt = dict(entry.response_times)
            delta = diff_response_time_dicts(rt, self._last_rt.get(key, {}))
            req0, fail0, sum0, max0 = self._last_counts.get(key, (0, 0, 0.0, 0))
            top = entry.max_response_time or 0
            self._last_rt[key] = rt
            self._last_counts[key] = (entry.num_requests, entry.num_failures, entry.total_response_time, top)
            n, fails = entry.num_requests - req0, entry.num_failures - fail0
            if n <= 0 and fails <= 0:
                continue
            buckets, counts = histogram.arrays(delta)
            # Locust keeps only the maximum so far: it is this interval's when it rose here; else the
            # interval's slowest bucket, never above the maximum so far (buckets round up to 5 %).
            slowest = top if top > max0 else min(buckets[-1], max0) if buckets else 0
            timed = sum(counts)
            pct = {p: min(calculate_response_time_percentile(delta, timed, p), slowest) if timed else 0
                   for p in (0.50, 0.95, 0.99)}
            rows.append({
                "run_id": self.run_id, "timestamp": snap, "time_ms": int(snap * 1000), "interval_s": interval,
                "request_type": method, "name": name, "requests": n, "failures": fails,
                "rps": n / interval, "fail_rps": fails / interval,
                "avg_ms": (entry.total_response_time - sum0) / n if n else 0.0,
                "p50_ms": pct[0.50], "p95_ms": pct[0.95], "p99_ms": pct[0.99], "max_ms": slowest, "users": users,
                "timing": timing, "buckets": buckets, "counts": counts,
            })
        return rows

    def run(self) -> None:
        try:
            next_t = time.monotonic()
            while True:
                if self.stopping_at is not None and self.awaiting_reports:
                    self._await_final_reports()
                # A test that stops while a tick is under way (its sink flush yields) gets one more
                # tick: the requests logged after that tick's snapshot are in no interval otherwise.
                stopped = self.stopping_at is not None
                self.tick()
                if stopped and self._drain_finished():
                    return
                next_t += self.sleep_time
                now = time.monotonic()
                if next_t < now:  # a slow sample: start the next one now, never sleep a negative time
                    next_t = now
                gevent.sleep(next_t - now)
        except gevent.GreenletExit:
            raise
        except Exception:
            self.crashed = True
            log.exception("monitor: sampling crashed; the run goes on, exit code will be %d", ExitCode.MONITOR_CRASH)

    def _await_final_reports(self) -> None:
        """Hold the first sample after the stop until each worker's last report is in: a worker sends
        the requests of its last seconds only once its users have stopped, after the master's stop."""
        runner = self.environment.runner
        deadline = self.stopping_at + FINAL_REPORT_WAIT
        while self.awaiting_reports and time.monotonic() < deadline:
            if isinstance(runner, MasterRunner):  # a worker lost (no heartbeat) never reports again
                self.awaiting_reports -= {c.id for c in runner.clients.values() if c.state == STATE_MISSING}
            gevent.sleep(0.05)
        if self.awaiting_reports:
            log.warning("monitor: no last report from %d worker(s) within %.0f s of the stop; their last "
                        "requests go into a final interval if they arrive before the end",
                        len(self.awaiting_reports), FINAL_REPORT_WAIT)
            self.awaiting_reports = set()

    def _drain_finished(self) -> bool:
        waited = time.monotonic() - self.stopping_at
        outcome = drain_outcome(self.sampling, waited, self.drain_timeout)
        if outcome is None:
            return False
        self.drained, text = outcome
        self.drain_seconds = round(waited, 3)
        self.drain_unknown = "; ".join(self.sampling.unknown.values()) if self.drained is None else ""
        (log.info if self.drained else log.warning)("monitor: %s", text)
        return True

    # -- rows ----------------------------------------------------------------------------------
    def run_row(self, event_type: str, extra: dict) -> None:
        if self.sink:
            self.sink.add("load_test_runs", {"run_id": self.run_id, "timestamp": time.time(),
                                             "event_type": event_type, "extra": json.dumps(extra)})

    def meta_row(self, version: int, **fields) -> None:
        if self.sink:
            self.sink.add("load_test_meta", {"run_id": self.run_id, "version": version, "started": self.started,
                                             **fields})


# Each sample as it is taken (listeners: environment, run_id, time, stats by source, backlogs by
# source, request_rows: the interval's rows of load_test_request_stats), e.g. the web UI's charts.
sampled = EventHook()


@dataclass
class MonitorRun:
    """The monitor's state in this Locust process (plumbing.run_state)."""

    monitor: Monitor | None = None  # the current test's (None with --no-monitor)
    worker_users: dict[str, int] = field(default_factory=dict)  # master: worker id -> users in its last report


def _run(environment) -> MonitorRun:
    return run_state.of(environment, MonitorRun)


def _monitor(environment) -> Monitor | None:
    return _run(environment).monitor


@events.init.add_listener
def _web_ui(environment, **_kw) -> None:
    from monitors import webui

    def latest() -> tuple[str, dict]:
        run = _run(environment)
        return run_id(environment), (run.monitor.latest if run.monitor is not None else None) or {}

    webui.install(environment, latest)
    if environment.web_ui is not None:  # the charts' points are kept only for a web UI to show
        sampled.add_listener(lambda **kw: webui.on_sample(**kw))


@events.init.add_listener
def _track_worker_reports(environment, runner=None, **_kw) -> None:
    if isinstance(runner, MasterRunner):
        environment.events.worker_report.add_listener(
            lambda client_id, data, **_: _worker_report(environment, client_id, data))


def _worker_report(environment, client_id: str, data: dict) -> None:
    """A report with 0 users running is complete: every request of that worker's users is in it."""
    users = data.get("user_count", 0)
    _run(environment).worker_users[client_id] = users
    mon = _monitor(environment)
    if mon is not None and not users:
        mon.awaiting_reports.discard(client_id)


def workers_with_users(environment) -> set[str]:
    """On a master: the workers that ran users according to their latest report or spawn message."""
    runner = environment.runner
    if not isinstance(runner, MasterRunner):
        return set()
    reported = {cid for cid, users in _run(environment).worker_users.items() if users}
    return reported | {c.id for c in runner.clients.values() if c.user_count and c.state != STATE_MISSING}


@end.run_started.add_listener
def _start(environment, run_id: str, start: dict, meta: dict, **_kw) -> None:
    """The run (lifecycle) started a test on the master or a local runner: sample it, store its rows."""
    o, rid = environment.parsed_options, run_id
    run = _run(environment)
    run.monitor = None
    if o is None or o.no_monitor:
        return
    results = settings.RESULTS_DIR.resolve()
    sink = sinks.from_options(o, name=rid).start()
    samplers = sampling.build_samplers(o)
    mon = Monitor(environment, rid, sink, samplers, o.monitor_interval, o.drain_timeout,
                  Path(results) if results else None)
    run.monitor = mon
    mon.run_row("start", {"backends": sampling.chosen(o), **start})
    mon.meta_row(1, **meta, exit_code=-1)
    log.info("monitor: run %s, sampling %s every %.1f s into %s/%s", rid, ", ".join(samplers), o.monitor_interval,
             redact(sink.url), sink.database)
    mon.greenlet = gevent.spawn(mon.run)


@events.test_stop.add_listener
def _stop(environment, **_kw) -> None:
    mon = _monitor(environment)
    if mon is not None and mon.stopping_at is None:
        mon.awaiting_reports = workers_with_users(environment)
        mon.stopping_at = time.monotonic()
        if any(s.name != "host" for s in mon.samplers.values()):
            log.info("monitor: test stopped; sampling until drained (at most %.0f s)", mon.drain_timeout)


@end.pipeline_draining.add_listener
def _drain(environment, **_kw) -> None:
    """Sample until the pipeline drained (or --drain-timeout), then a last interval of requests."""
    mon = _monitor(environment)
    if mon is None or mon.finished:
        return
    if mon.stopping_at is None:  # the users stopped without a test_stop reaching us
        _stop(environment)
    if mon.greenlet is not None:
        mon.greenlet.join(timeout=mon.drain_timeout + mon.sleep_time + 30)
        if not mon.greenlet.dead:
            mon.greenlet.kill()
    if mon.crashed:
        end.check_failed(environment, ExitCode.MONITOR_CRASH, "the monitor's sampling crashed (logged above)")
    else:  # requests reported after the last sample (a late worker report) form a last interval
        mon._store_request_stats(time.time())
    checks.record_drain(environment, mon.drained, mon.drain_seconds, mon.max_backlog, mon.drain_unknown)


@end.run_measured.add_listener
def _check_e2e(environment, **_kw) -> None:
    """--check-e2e-p95: every E2E row merged; nothing measured end to end fails it too."""
    o = environment.parsed_options
    if o is None or o.check_e2e_p95 is None or isinstance(environment.runner, WorkerRunner):
        return
    p95 = e2e.p95(environment.stats)
    if p95 is None or p95 > o.check_e2e_p95:
        end.check_failed(environment, ExitCode.E2E_P95, f"end-to-end p95 {'not measured' if p95 is None else f'{p95} ms'} "
                                                        f"> --check-e2e-p95 {o.check_e2e_p95}")


@end.run_event.add_listener
def _run_event(environment, event_type: str, extra: dict, **_kw) -> None:
    mon = _monitor(environment)
    if mon is not None:
        mon.run_row(event_type, extra)


@end.run_ending.add_listener
def _end_rows(environment, end_row: dict, meta: dict, **_kw) -> None:
    """The exit code is decided: the end row and the run's metadata (their fields from lifecycle, with
    the monitor's own sample errors), then the sink is closed."""
    mon = _monitor(environment)
    if mon is None or mon.finished:
        return
    mon.finished = True
    mon.run_row("end", {**end_row, "sample_errors": mon.sample_errors})
    mon.meta_row(2, **meta)
    mon.sampling.close()
    if mon.sink:
        ok = mon.sink.close()
        log.info("monitor: run %s ended; %d rows written to ClickHouse%s", mon.run_id, mon.sink.written,
                 "" if ok else f", the rest kept in {mon.sink.spill_path}")


# -- API for the rest of the suite --------------------------------------------------------------
def record_sample(environment, source: str, sample: dict) -> None:
    """Add a sample from outside the monitor (e.g. MQTT $SYS figures) to the next stored sample."""
    mon = _monitor(environment)
    if mon is not None:
        mon.pushed[source] = sample


def add_sampler(environment, name: str, sampler) -> bool:
    """Sample `sampler` with the monitor's own from now on; its backlog holds the drain. False when
    no monitor runs (--no-monitor)."""
    mon = _monitor(environment)
    if mon is None:
        return False
    mon.samplers[name] = sampler
    return True


def sample_interval(environment) -> float:
    """Seconds between the monitor's samples (--monitor-interval), for samplers of their own."""
    return environment.parsed_options.monitor_interval


def drain_timeout(environment) -> float:
    """How long the run's end waits for the pipeline to drain (--drain-timeout)."""
    return environment.parsed_options.drain_timeout


def store_target(options) -> tuple[str, str] | None:
    """The ClickHouse URL and database the run's rows go to; None without this plugin's options."""
    return sinks.target(options)


def measuring(environment) -> bool:
    """True while a monitor runs this test: it drains the pipeline at the run's end."""
    mon = _monitor(environment)
    return mon is not None and not mon.finished
