"""The rate capacity search as a Locust `LoadTestShape` (its rule and decisions: `loadtesting.rate_capacity`).

The shape holds the users at -u (the open model's pool) and a greenlet steps the generator's rate
through the `RateTarget` the locustfile gives (`loadtesting.locust_plugin.use_rate_search`). It
samples on its own connections (not the monitor's): the backend's backlog (bus lag, Celery queues)
when --monitor-backend names one, the end-to-end check's stored count, the ClickHouse sampler at the
window's edges (lag, delayed/rejected inserts, parts) and the generator's CPU.
"""

from __future__ import annotations

import json
import logging
import math
import time
from collections import deque
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import gevent
from locust import LoadTestShape
from locust.runners import MasterRunner
from locust.stats import calculate_response_time_percentile, diff_response_time_dicts

from loadtesting import phases
from loadtesting import rate_capacity as rc
from monitors import clickhouse as ch_sampler
from monitors import process_cpu
from monitors import samplers as sampling
from monitors.loop import close_all
from monitors.planned import planned_stats
from plumbing import histogram
from plumbing.percentile import percentile

log = logging.getLogger("loadtesting.capacity")
E2E_SERIES, BUS_SERIES = "sent − stored", "bus"


@dataclass
class RateTarget:
    """What an open-model locustfile hands the search (counts over all processes)."""

    name: str  # the open model's generator (its DROPPED row)
    set_rate: Callable[[float, float], float]  # (rate, ramp s) -> wall-clock instant the ramp starts
    request_type: str  # of the sends in Locust's stats
    stored: Callable[[], int] | None = None  # events stored so far (the end-to-end check), None without one
    stored_every: float = 0.0  # s between the readings behind `stored` (it moves only when it reads)
    unit: str = "events"
    bus_kind: str | None = None  # rc.CONSUMERS or rc.CELERY: what the backend's backlog is
    latencies: list = field(default_factory=list)  # (time, ms) of end-to-end latencies, fed by the locustfile
    # Or, instead of `stored`: the (request type, name) of the end-to-end requests in Locust's stats
    # (e.g. the Kafka output topic's E2E rows): their count is what arrived.
    output: tuple[str, str] | None = None
    # Or, instead of `latencies`: the exact latency histogram ({ms: count}, merged over processes) of
    # what arrived from one epoch time to another (the Kafka latency reader's ArrivalWindows).
    window_latencies: Callable[[float, float], dict[int, int]] | None = None

    def observe_latency(self, ms: float) -> None:
        self.latencies.append((time.time(), ms))


@dataclass
class _Counts:
    sent: int
    failed: int
    dropped: int
    planned_times: dict
    stored: int | None


class RateSearch(LoadTestShape):
    use_common_options = True  # -u: the open model's users; --spawn-rate

    def __init__(self, environment, target: RateTarget, settings: rc.RateSearchSettings,
                 results_dir: Path | Callable[[], Path | None] | None = None, on_phase=None, on_done=None) -> None:
        super().__init__()
        # The run folder, or how to find it when the search ends (the web UI makes one per test).
        self.environment, self.target, self.results_dir = environment, target, results_dir
        self.on_phase, self.on_done = on_phase, on_done
        self._read_users()
        self.settings = settings
        self.step_time, self.settle_time = settings.step_time, settings.settle_time
        self.steps: list[rc.RateStep] = []
        self.result: dict | None = None
        self._driver: gevent.Greenlet | None = None
        self._samples: deque[dict] = self._new_samples()
        self._samplers: dict = {}
        self._backend_names: list[str] = []
        self._said_unknown: set[str] = set()  # reasons a bus lag is unknown, said once
        self._distributed = isinstance(environment.runner, MasterRunner)
        self._began = time.time()
        self._leftover = 0  # events a drain that timed out left behind, for the next step
        self._deadline = 0.0  # the search's start + --capacity-time-limit
        self._time_limited: float | None = None  # the rate the time limit left untried
        self._schedule: list[tuple[float, float, float, float]] = []  # (wall, from rate, to rate, ramp s)
        self._step: rc.RateStep | None = None  # the step being measured
        self._finishing = False

    def _read_users(self) -> None:
        # -u and -r, or the web UI's start form (Locust puts its user count into parsed_options): the
        # open model's pool of concurrent sends for this test, not a load level.
        o = self.environment.parsed_options
        self.users = max(int(o.num_users or 1), 1)
        self.spawn_rate = float(o.spawn_rate or self.users)

    def _new_samples(self) -> deque[dict]:
        """Room for the samples a judgement reads (a window measured twice, with its ramp, settle and
        drain before it), no more: memory stays bounded however long the search may run."""
        cfg = self.settings
        span = 3 * cfg.step_time + cfg.settle_time + cfg.ramp_time + cfg.drain_timeout
        return deque(maxlen=math.ceil(span / cfg.sample_interval) + 16)

    def _set_rate(self, rate: float, ramp: float) -> float:
        at = self.target.set_rate(rate, ramp)
        now_rate = self._rate_at(at)
        self._schedule.append((at, now_rate, rate, ramp))
        return at

    def _rate_at(self, wall: float) -> float:
        rate = self.settings.start_rate
        for at, r0, r1, ramp in self._schedule:
            if wall < at:
                break
            rate = r1 if ramp <= 0 or wall >= at + ramp else r0 + (r1 - r0) * (wall - at) / ramp
        return rate

    def _planned_until(self, wall: float) -> float:
        """Events planned from the search's start to `wall` (the integral of the rates it set)."""
        edges = sorted({self._began, *(a for a, *_ in self._schedule), *(a + r for a, _x, _y, r in self._schedule)})
        edges = [e for e in edges if e < wall] + [wall]
        total = 0.0
        for a, b in zip(edges, edges[1:], strict=False):
            total += (self._rate_at(a) + self._rate_at(b)) / 2 * (b - a)  # linear pieces: exact
        return total

    def reset_time(self) -> None:
        """A new test (Locust calls this at each start, e.g. from the web UI): a search from scratch."""
        super().reset_time()
        if self._driver is not None:
            self._driver.kill(block=False)
        self._driver = None
        self.steps, self.result, self._samples, self._time_limited = [], None, self._new_samples(), None
        self._schedule, self._leftover, self._step, self._finishing = [], 0, None, False
        self._began = time.time()
        self._read_users()

    def stop(self) -> None:
        """The test stops before the search ended (the web UI's Stop, --run-time, a signal): end the search
        here with what it measured, marked as stopped (capacity.json, the rows, the summary)."""
        if self.result is not None or self._driver is None or self._finishing or self._driver is gevent.getcurrent():
            return
        driver, self._driver = self._driver, None
        driver.kill(block=True)  # its `finally` closes the search's samplers
        self._finish(self._began, stopped=True)

    def tick(self):
        if self.result is not None:
            return None
        if self._driver is None:
            self._driver = gevent.spawn(self._run)
        return self.users, self.spawn_rate

    # -- counting ------------------------------------------------------------------------------
    def _counts(self) -> _Counts:
        sent = failed = dropped = 0
        for (name, method), e in self.environment.stats.entries.items():
            if method == self.target.request_type:
                sent += e.num_requests - e.num_failures
                failed += e.num_failures
            elif method == "DROPPED" and name == self.target.name:
                dropped += e.num_requests
        planned = planned_stats(self.environment)
        times = {}
        for (_name, method), e in planned.entries.items():
            if method == self.target.request_type:
                for k, v in e.response_times.items():
                    times[k] = times.get(k, 0) + v
        stored = self.target.stored() if self.target.stored else None
        if self.target.output is not None:
            entry = self.environment.stats.entries.get((self.target.output[1], self.target.output[0]))
            stored = entry.num_requests if entry is not None else 0
        return _Counts(sent, failed, dropped, times, stored)

    def _generator_cpu(self) -> float:
        # The suite's own figure over the last few seconds (monitors.process_cpu: Locust's is read every
        # 10 s and is 0 until its second reading), Locust's beside it; on a master, the busiest worker's.
        runner = self.environment.runner
        if isinstance(runner, MasterRunner):
            reported = process_cpu.workers(self.environment, 2 * self._report_lag() + 1).values()
            return max([*reported, *(c.cpu_usage for c in runner.clients.values())], default=0.0)
        return max(process_cpu.percent(self.environment) or 0.0, float(runner.current_cpu_usage or 0.0))

    def _report_lag(self) -> float:
        from locust.runners import WORKER_REPORT_INTERVAL

        return WORKER_REPORT_INTERVAL if isinstance(self.environment.runner, MasterRunner) else 0.0

    # -- sampling ------------------------------------------------------------------------------
    def _open_samplers(self) -> None:
        o = self.environment.parsed_options  # the samplers' own options, read by their builders
        try:
            self._samplers = sampling.build_samplers(o)
            if "clickhouse" not in self._samplers and self.target.stored is not None and self.target.unit == "events":
                self._samplers["clickhouse"] = ch_sampler.from_options(o)
            self._backend_names = [n for n in sampling.chosen(o) if n in self._samplers]
        except Exception as exc:  # noqa: BLE001 - the search goes on with what it can measure
            log.warning("capacity search: samplers unavailable (%s); judging by the end-to-end check only", exc)
            self._samplers, self._backend_names = {}, []

    def _sample_loop(self) -> None:
        interval = self.settings.sample_interval
        next_t = time.monotonic()
        while True:
            s: dict = {"t": time.time(), "cpu": self._generator_cpu()}
            c = self._counts()
            s["sent"], s["failed"], s["dropped"], s["stored"] = c.sent, c.failed, c.dropped, c.stored
            # A master's sent count moves in steps as its workers report (every few seconds): its
            # backlog counts the planned events instead (with no drop in a judged window, the same
            # events, up to a constant the slope ignores).
            s["offered"] = self._planned_until(s["t"]) if self._distributed else c.sent
            bus, lost = [], 0
            for name in self._backend_names:
                try:
                    sample = self._samplers[name].sample()
                    b = self._samplers[name].backlog(sample)
                    if b is None and sample.get("lag_unknown"):
                        # No series rather than a flat one: a backlog nobody reads is not judged.
                        self._say_unknown(name, sample["lag_unknown"])
                        s["bus_unknown"] = sample["lag_unknown"]
                        bus = []
                        break
                    if b is not None and b >= 0:
                        # Events the bus discarded unread (a stream's MAXLEN trimming a lagging group's
                        # entries) are events its consumers did not keep up with: they stay in the series.
                        trimmed = int(sample.get("lost_unread") or 0)
                        lost += trimmed
                        bus.append(b + trimmed)
                except Exception as exc:  # noqa: BLE001 - a missed sample; the slope uses the others
                    log.debug("capacity search: %s sample failed: %s", name, exc)
                    bus = []
                    break
            if bus:
                s["bus"], s["lost"] = sum(bus), lost
            host = self._samplers.get("host")
            if host is not None:
                try:
                    s["host_cpu"] = host.sample()["cpu_percent"]
                except Exception:  # noqa: BLE001
                    pass
            self._samples.append(s)
            next_t += interval
            gevent.sleep(max(next_t - time.monotonic(), 0.0))

    def _say_unknown(self, name: str, why: str) -> None:
        if why not in self._said_unknown:
            self._said_unknown.add(why)
            log.warning("capacity search: %s: lag unknown — is the pipeline consuming? (%s's backlog is not "
                        "judged; the end-to-end sent − stored series still is)", why, name)

    def _clickhouse(self) -> dict:
        sampler = self._samplers.get("clickhouse")
        if sampler is None:
            return {}
        try:
            return sampler.sample()
        except Exception as exc:  # noqa: BLE001
            return {"error": str(exc).splitlines()[0][:200]}

    def _e2e_backlog(self, s: dict, base: float) -> float | None:
        if s.get("stored") is None:
            return None
        return s["offered"] - s["stored"] - base

    # -- the search ----------------------------------------------------------------------------
    def _run(self) -> None:
        runner = self.environment.runner
        while runner.state != "running" or runner.user_count < self.users:
            gevent.sleep(0.1)
        self._open_samplers()
        began = self._began = time.time()
        sampler = gevent.spawn(self._sample_loop)
        try:
            self._search(began)
        except gevent.GreenletExit:
            raise
        except Exception:
            log.exception("capacity search crashed")
        finally:
            sampler.kill(block=False)
            close_all(self._samplers)
        self._finish(began)

    def _wait_until(self, wall: float) -> None:
        while (left := wall - time.time()) > 0:
            gevent.sleep(min(left, 0.5))

    def _horizon(self, prev_rate: float) -> float:
        # Users idle at the old rate hold one instant each (the pull scheduler): the new rate applies
        # after those, at most users / old rate seconds on (instants of the new rate that come before
        # then find no free user: transient drops, outside the window).
        return self.users / prev_rate

    def _step_worst(self, horizon: float) -> float:
        return rc.step_worst_s(self.settings, horizon, self._report_lag())

    def _search(self, began: float) -> None:
        cfg = self.settings
        self._deadline = began + cfg.time_limit
        rate, prev_rate = cfg.start_rate, cfg.start_rate
        first = True
        log.info("capacity search: from %g %s/s, at most %.1f min (the plan's longest case within "
                 "--capacity-time-limit %g s)", rate, self.target.unit, self._time_left(began) / 60, cfg.time_limit)
        while rate is not None:
            step = self._step = rc.RateStep(target=rate, leftover=self._leftover)
            self._leftover = 0
            if self._samples:
                left = self._e2e_backlog(self._samples[-1], 0)
                step.backlog_before = int(left) if left is not None else None
                step.bus_before = self._samples[-1].get("bus")
                step.lost_before = self._samples[-1].get("lost", 0)
            at = time.time() if first else self._set_rate(rate, cfg.ramp_time)
            horizon = 0.0 if first else self._horizon(prev_rate)
            self._wait_until(at + cfg.ramp_time + horizon + self.settle_time)
            self._measure(step)
            self.steps.append(step)
            self._step = None
            log.info(rc.progress_line(step, self._time_left(began), self.target.unit))
            if step.verdict == rc.GENERATOR:
                return
            first, prev_rate = False, rate
            rate = rc.next_rate(self.steps, cfg.start_rate, cfg.rate_step, cfg.rate_resolution, cfg.max_rate)
            if rate is None:
                return
            # The next step starts only when its longest case (after a drain, at the drain's rate)
            # ends within --capacity-time-limit: the search's duration is bounded by construction.
            allowed = rc.drain_allowed(self._deadline - time.time(),
                                       self._step_worst(self._horizon(self._drain_rate(step.target) if not step.ok else prev_rate)),
                                       cfg.drain_timeout if not step.ok else 0.0)
            if allowed is None:
                self._time_limited = rate
                log.info("capacity search: the next step (%g %s/s) would not end within --capacity-time-limit "
                         "%g s: stopping here", rate, self.target.unit, cfg.time_limit)
                return
            if not step.ok:
                prev_rate = self._drain(step, allowed)

    def _window_samples(self, start: float, end: float) -> list[dict]:
        return [s for s in self._samples if start <= s["t"] <= end]

    def _measure(self, step: rc.RateStep) -> None:
        cfg = self.settings
        start = time.time()
        self.target.latencies.clear()  # memory stays bounded: only this step's latencies are kept
        c0, ch0 = self._counts(), self._clickhouse()
        lat0 = 0
        tol = cfg.backlog_tolerance * step.target
        end = start + self.step_time
        while True:
            self._wait_until(end)
            c1 = self._counts()
            window = self._window_samples(start, end + 0.5)
            trends = self._trends(step, window, tol, start)
            step.start, step.end = round(start, 3), round(time.time(), 3)
            self._figures(step, c0, c1, lat0, window)
            limit = rc.generator_limit(step, self._report_lag(), check_sent=not self._distributed)
            if limit:
                step.verdict, step.why = rc.GENERATOR, limit
                break
            # A backlog the drain left (accounted for): the window's events queue behind it, so their
            # latency says nothing of this rate; the slopes, offset-free, still judge the step.
            slo = cfg.slo_e2e_p95 if not step.leftover else float("inf")
            if rc.judge(step, trends, slo, final=step.measured_twice) is not None:
                if step.leftover and step.e2e_p95_ms is not None:
                    step.why = "; ".join(filter(None, [step.why, f"end-to-end p95 not judged: {step.leftover} "
                                                       "events were left from the failed step before"]))
                break
            step.measured_twice = True  # unclear: measure as long again (the interval narrows ~2.8×)
            end = time.time() + self.step_time
        ch1 = self._clickhouse()
        step.clickhouse = _clickhouse_delta(ch0, ch1)
        step.clickhouse_lag_s = ch1.get("lag_seconds")

    def _trends(self, step: rc.RateStep, window: list[dict], tol: float, step_start: float) -> dict[str, rc.Trend]:
        trends: dict[str, rc.Trend] = {}
        series = {E2E_SERIES: [(s["t"], self._e2e_backlog(s, 0)) for s in window if s.get("stored") is not None],
                  BUS_SERIES: [(s["t"], s["bus"]) for s in window if "bus" in s]}
        step.backlog = {}
        step.bus_unknown = next((s["bus_unknown"] for s in window if "bus_unknown" in s), "")
        # A trough sits up to a sample interval after its flush (the end-to-end count up to a poll
        # more): uniform delays, so its scatter from sampling alone is rate × interval / √12 each.
        poll = self.target.stored_every
        every = self.settings.sample_interval
        trough_sd = {E2E_SERIES: step.target * math.sqrt((every ** 2 + poll ** 2) / 12),
                     BUS_SERIES: step.target * every / math.sqrt(12)}
        for name, points in series.items():
            if len(points) < 4:
                continue
            t0 = points[0][0]
            tr = rc.trend([t - t0 for t, _ in points], [float(v) for _, v in points], tol, trough_sd[name])
            trends[name] = tr
            step.backlog[name] = {"start": points[0][1], "end": points[-1][1], **tr.as_dict()}
        both = [(s["t"], self._e2e_backlog(s, 0) - s["bus"]) for s in window
                if s.get("stored") is not None and "bus" in s]
        step.between = {}
        if len(both) >= 4:
            t0 = both[0][0]
            tr = rc.trend([t - t0 for t, _ in both], [float(v) for _, v in both], tol, trough_sd[E2E_SERIES])
            step.between = {"start": both[0][1], "end": both[-1][1], **tr.as_dict()}
        # The window's samples as judged (s from the window's start): the evidence behind the verdict.
        step.series = [[round(s["t"] - step_start, 2),
                        self._e2e_backlog(s, 0) if s.get("stored") is not None else None, s.get("bus")]
                       for s in window]
        return trends

    def _figures(self, step: rc.RateStep, c0: _Counts, c1: _Counts, lat0: int, window: list[dict]) -> None:
        dt = max(step.end - step.start, 1e-9)
        step.planned = round(step.target * dt)
        step.sent, step.failed = c1.sent - c0.sent, c1.failed - c0.failed
        step.dropped = c1.dropped - c0.dropped
        if self._distributed:
            # A master's sent counts arrive with the workers' reports, seconds apart: over a short window
            # they are off by up to a report's worth. Every planned instant not dropped is sent (the
            # open model's invariant), so that is the offered rate; the reported one is kept beside it.
            step.sent_per_s_reported = round(step.sent / dt, 2)
            step.offered_per_s = round(max(step.planned - step.dropped, 0) / dt, 2)
        else:
            step.offered_per_s = round(step.sent / dt, 2)
        if c1.stored is not None and c0.stored is not None:
            step.stored_per_s = round((c1.stored - c0.stored) / dt, 2)
        lat = sorted(ms for t, ms in self.target.latencies[lat0:] if t <= step.end)
        if lat:
            step.e2e_p50_ms = round(percentile(lat, 0.50), 1)
            step.e2e_p95_ms = round(percentile(lat, 0.95), 1)
        if self.target.window_latencies is not None:
            if self._distributed:  # the workers' latencies of the window's last seconds come with their reports
                self._wait_until(step.end + self._report_lag() + 0.5)
            # Exact percentiles of the window's latencies, the processes' histograms added, never averaged.
            hist = self.target.window_latencies(step.start, step.end)
            if hist:
                step.e2e_p50_ms = float(histogram.nearest_rank(hist, 0.50))
                step.e2e_p95_ms = float(histogram.nearest_rank(hist, 0.95))
        delta = diff_response_time_dicts(c1.planned_times, c0.planned_times)
        n = sum(delta.values())
        if n:
            step.send_p95_from_planned_ms = float(calculate_response_time_percentile(delta, n, 0.95))
            if lat:
                # p95(a + b) <= p97.5(a) + p97.5(b): a bound, as the two delays are not recorded per event.
                step.e2e_p95_from_planned_ms = round(percentile(lat, 0.975)
                                                     + calculate_response_time_percentile(delta, n, 0.975), 1)
        cpus = [s["cpu"] for s in window if s.get("cpu") is not None]
        step.generator_cpu_max = max(cpus) if cpus else None
        hosts = [s["host_cpu"] for s in window if s.get("host_cpu") is not None]
        step.host_cpu_max = max(hosts) if hosts else None

    def _drain_rate(self, failed: float) -> float:
        return rc.drain_rate(self.settings.start_rate, self.users, failed)

    def _drain(self, failed: rc.RateStep, timeout: float) -> float:
        """After a failed step: hold a quarter of the start rate until the backlog is back to what it was
        before the step (or `timeout` passes: the next step then notes the leftover)."""
        cfg = self.settings
        low = self._drain_rate(failed.target)
        self._set_rate(low, 0.0)
        began = time.time()
        limit = failed.backlog_before if failed.backlog_before is not None else 0
        left, lost = None, 0
        while time.time() - began < timeout:
            gevent.sleep(cfg.sample_interval)
            last = self._samples[-1] if self._samples else {}
            # Events the bus lost unread since the failed step began will never be stored: they are
            # no backlog to wait for (both series count them).
            lost = last.get("lost", 0) - failed.lost_before
            left = self._e2e_backlog(last, lost)
            # Back to the level before the failed step (the series' offsets cancel), with a second
            # of the drain rate as slack; the bus's own backlog back to about nothing.
            bus_ok = "bus" not in last or last["bus"] - lost <= max(failed.bus_before or 0, 0) + low
            if (left is None or left <= limit + low) and bus_ok:
                break
        failed_drain = round(time.time() - began, 1)
        if left is not None and left > limit + low:
            self._leftover = int(left - limit)
        log.info("capacity search: drained at %g %s/s for %.0f s (backlog %s%s)", low, self.target.unit,
                 failed_drain, left, f"; {lost:,} lost unread, not waited for" if left is not None and lost else "")
        failed.drain_s = failed_drain
        return low

    def _time_left(self, began: float) -> float:
        """A bound on what is left: the plan's longest case, within what --capacity-time-limit leaves."""
        lowest = min((s.target for s in self.steps), default=self.settings.start_rate)
        per_step = self._step_worst(self.users / max(self._drain_rate(lowest), 1e-9))
        return max(min(rc.plan_left_s(self.steps, self.settings, per_step),
                       began + self.settings.time_limit - time.time()), 0.0)

    # -- the result ----------------------------------------------------------------------------
    def _folder(self) -> Path | None:
        folder = self.results_dir() if callable(self.results_dir) else self.results_dir
        return Path(folder) if folder else None

    def _finish(self, began: float, stopped: bool = False) -> None:
        self._finishing = True
        passing = [s for s in self.steps if s.ok]
        best = max(passing, key=lambda s: s.target, default=None)
        failing = [s for s in self.steps if not s.ok and (best is None or s.target > best.target)]
        first_fail = next((s for s in self.steps if not s.ok), None)
        worst = min(failing, key=lambda s: s.target, default=None)
        gen = next((s for s in self.steps if s.verdict == rc.GENERATOR), None)
        bottleneck = None
        if first_fail is not None:
            stage, evidence = rc.attribute(first_fail, self.target.bus_kind)
            bottleneck = {"stage": stage, "evidence": evidence, "step": first_fail.target}
        sustained = best.target if best else 0.0
        cfg = self.settings
        self.result = {
            "unit": self.target.unit,
            "sustained_per_second": sustained,
            f"sustained_{self.target.unit}_per_second": sustained,
            "offered_at_sustained": best.offered_per_s if best else None,
            "stored_at_sustained": best.stored_per_s if best else None,
            "e2e_p95_ms_at_sustained": best.e2e_p95_ms if best else None,
            "clickhouse_lag_s_at_sustained": best.clickhouse_lag_s if best else None,
            "first_failing": ({"target": first_fail.target, "verdict": first_fail.verdict, "why": first_fail.why}
                              if first_fail else None),
            "lowest_failing_above": worst.target if worst else None,
            "generator_limited_at": gen.target if gen else None,
            "time_limit_s": cfg.time_limit,
            "stopped_by_time_limit": self._time_limited,
            # Stopped before its end: a partial result (the step then being measured is not judged).
            "stopped": stopped,
            "stopped_during": self._step.target if stopped and self._step is not None else None,
            "bottleneck": bottleneck,
            "resolution": cfg.rate_resolution or round(max(0.1 * sustained, 1.0), 3),
            "rule": cfg.rule(),
            "users": self.users,
            "duration_s": round(time.time() - began, 1),
            "steps": [asdict(s) for s in self.steps],
        }
        marked = []
        for name, step in [(phases.MINIMAL, self.steps[0] if self.steps else None), (phases.MAX_SUSTAINABLE, best),
                           (phases.FAILURE, worst or gen)]:
            if step is None:
                continue
            phase = phases.Phase(name, step.start, step.end, "capacity-search",
                                 {"rate": step.target, "offered_per_s": step.offered_per_s,
                                  "stored_per_s": step.stored_per_s, "e2e_p95_ms": step.e2e_p95_ms})
            marked.append(phase)
            phases.record_phase(self._folder(), phase)
            if self.on_phase:
                self.on_phase(phase)
        self.result["phases"] = [asdict(p) for p in marked]
        text = rc.summary_text(self.result)
        print(text, flush=True)
        # The conclusion in the log as well: the web UI's Logs tab shows the log, not the console.
        conclusion = text.splitlines()[len(self.steps) + 3:]
        log.info("capacity search: %s", "; ".join(conclusion))
        folder = self._folder()
        if folder:
            (folder / "capacity.json").write_text(json.dumps(self.result, indent=1, default=str))
        if self.on_done:
            self.on_done(self.result)


def _clickhouse_delta(a: dict, b: dict) -> dict:
    """ClickHouse's own insert figures over the window (system.events totals, metrics, parts)."""
    if not a or not b or "error" in a or "error" in b:
        return {k: v for k, v in (b or {}).items() if k == "error"}
    out = {}
    for key, name in (("delayed_inserts_total", "delayed_inserts"), ("rejected_inserts_total", "rejected_inserts"),
                      ("failed_insert_query_total", "failed_inserts")):
        if key in a and key in b:
            out[name] = b[key] - a[key]
    for key in ("insert_query_per_s", "inserted_rows_per_s", "active_parts", "max_parts_per_partition",
                "delayed_inserts_now"):
        if key in b:
            out[key] = b[key]
    return out
