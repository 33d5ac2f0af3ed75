"""The capacity search as a Locust `LoadTestShape` (the search itself: `loadtesting.capacity`)."""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

from locust import LoadTestShape
from locust.stats import calculate_response_time_percentile, diff_response_time_dicts

from loadtesting import phases
from loadtesting.capacity import Step, UserSearchSettings, decide, summary_text

log = logging.getLogger("loadtesting.capacity")


@dataclass
class _Snapshot:
    requests: int
    failures: int
    times: dict


class CapacitySearch(LoadTestShape):
    use_common_options = True  # --spawn-rate sets the ramp speed

    def __init__(self, environment, search: UserSearchSettings,
                 results_dir: Path | Callable[[], Path | None] | None = None, on_phase=None, on_done=None) -> None:
        super().__init__()
        self.environment = environment
        self.results_dir = results_dir
        self.on_phase, self.on_done = on_phase, on_done
        self.spawn_rate = search.spawn_rate
        self.start_users, self.step = search.start_users, search.step
        self.resolution, self.max_users = search.resolution, search.max_users
        self.step_time, self.settle_time = search.step_time, search.settle_time
        self.fail_ratio, self.slo_p95 = search.fail_ratio, search.slo_p95
        self.steps: list[Step] = []
        self.result: dict | None = None
        self._target = self.start_users
        self._reached_at: float | None = None
        self._window: tuple[float, _Snapshot] | None = None
        self._recovery: dict | None = None
        self._started = False  # a test started (reset_time): stop() ends its search

    def reset_time(self) -> None:
        super().reset_time()
        self.steps, self.result, self._target = [], None, self.start_users
        self._reached_at, self._window, self._recovery = None, None, None
        self._started = True

    def stop(self) -> None:
        """The test stops before the search ended (the web UI's Stop, --run-time, a signal): its result
        so far, marked as stopped."""
        if self.result is None and self._started:
            self._finish(stopped=True)

    def _folder(self) -> Path | None:
        folder = self.results_dir() if callable(self.results_dir) else self.results_dir
        return Path(folder) if folder else None

    # -- measuring -------------------------------------------------------------------------
    def _snapshot(self) -> _Snapshot:
        total = self.environment.stats.total
        return _Snapshot(total.num_requests, total.num_failures, dict(total.response_times))

    def _measure(self, since: _Snapshot, start: float, end: float) -> Step:
        now = self._snapshot()
        requests = now.requests - since.requests
        failures = now.failures - since.failures
        delta = diff_response_time_dicts(now.times, since.times)
        timed = sum(delta.values())
        p95 = float(calculate_response_time_percentile(delta, timed, 0.95)) if timed else 0.0
        # Buckets round up to 5 %: never name more than the slowest request so far (locust#1563).
        p95 = min(p95, float(self.environment.stats.total.max_response_time or p95))
        ratio = failures / requests if requests else 0.0
        why = ""
        if requests == 0:
            why = "no requests in the window"
        elif ratio > self.fail_ratio:
            why = f"failure ratio {ratio:.4f} > {self.fail_ratio}"
        elif self.slo_p95 is not None and p95 > self.slo_p95:
            why = f"p95 {p95:.0f} ms > SLO {self.slo_p95:.0f} ms"
        return Step(self._target, round(start, 3), round(end, 3), requests, failures,
                    round(requests / max(end - start, 1e-9), 2), round(ratio, 6), p95, not why, why)

    # -- the shape ---------------------------------------------------------------------------
    def tick(self):
        if self.result is not None:
            return None
        runner = self.environment.runner
        now = time.time()
        if self._recovery is not None:
            return self._recover(runner, now)
        # Locust blocks in start() until a ramp is done, so the first tick at the target is "reached";
        # a master's user count comes from worker reports and may lag a moment.
        if self._reached_at is None:
            if runner is not None and runner.user_count == self._target and runner.state == "running":
                self._reached_at = now
                log.info("capacity search: %d users reached; measuring after %.0f s", self._target, self.settle_time)
            return self._target, self.spawn_rate
        if self._window is None:
            if now - self._reached_at >= self.settle_time:
                self._window = (now, self._snapshot())
            return self._target, self.spawn_rate
        started, snap = self._window
        if now - started < self.step_time:
            return self._target, self.spawn_rate
        step = self._measure(snap, started, now)
        self.steps.append(step)
        log.info("capacity search: %d users → %.1f rps, %d failures, p95 %.0f ms: %s", step.users, step.rps,
                 step.failures, step.p95_ms, "ok" if step.ok else f"FAILED ({step.why})")
        nxt = decide(self.steps, self.step, self.resolution, self.max_users)
        if nxt is None:
            self._finish()
            return None
        if not step.ok:
            # An overloaded system can stay degraded (queues of abandoned requests, re-logins) at a load
            # it would carry if approached from below: recover at the best passing load first, so every
            # probe starts from a healthy system.
            best = max((s.users for s in self.steps if s.ok), default=0)
            self._recovery = {"users": max(min(best, nxt), 1), "next": nxt, "since": None, "quiet_from": None,
                              "failures": None}
            self._target = self._recovery["users"]
            return self._target, self.spawn_rate
        self._target, self._reached_at, self._window = nxt, None, None
        return self._target, self.spawn_rate

    def _recover(self, runner, now: float):
        """Hold the recovery load until --capacity-settle-time passes without a failure (at most 5× longer)."""
        rec = self._recovery
        if rec["since"] is None:
            if runner is None or runner.user_count != rec["users"] or runner.state != "running":
                return rec["users"], self.spawn_rate
            rec["since"] = rec["quiet_from"] = now
            rec["failures"] = self.environment.stats.total.num_failures
        failures = self.environment.stats.total.num_failures
        if failures != rec["failures"]:
            rec["failures"], rec["quiet_from"] = failures, now
        quiet = now - rec["quiet_from"] >= self.settle_time
        if quiet or now - rec["since"] >= 5 * max(self.settle_time, 10):
            log.info("capacity search: %s at %d users after %.0f s; probing %d users",
                     "recovered" if quiet else "still failing", rec["users"], now - rec["since"], rec["next"])
            self._target, self._reached_at, self._window, self._recovery = rec["next"], None, None, None
        return self._target, self.spawn_rate

    def _finish(self, stopped: bool = False) -> None:
        passing = [s for s in self.steps if s.ok]
        failing = [s for s in self.steps if not s.ok]
        best = max(passing, key=lambda s: s.users, default=None)
        worst = min((s for s in failing if best is None or s.users > best.users), key=lambda s: s.users, default=None)
        found = [(phases.MINIMAL, self.steps[0] if self.steps else None), (phases.MAX_SUSTAINABLE, best), (phases.FAILURE, worst)]
        marked = []
        for name, step in found:
            if step is None:
                continue
            phase = phases.Phase(name, step.start, step.end, "capacity-search",
                                 {"users": step.users, "rps": step.rps, "requests": step.requests,
                                  "failures": step.failures,
                                  "p95_ms": step.p95_ms})
            marked.append(phase)
            phases.record_phase(self._folder(), phase)
            if self.on_phase:
                self.on_phase(phase)
        self.result = {
            "max_sustainable_users": best.users if best else 0,
            "max_sustainable_rps": best.rps if best else 0.0,
            "p95_ms_at_max": best.p95_ms if best else None,
            "first_failing_users": worst.users if worst else None,
            "failure_reason": worst.why if worst else None,
            "resolution": self.resolution,
            "reached_max_users": worst is None and not stopped,
            # Stopped before its end: a partial result (the step then being measured is not judged).
            "stopped": stopped,
            "stopped_during": self._target if stopped else None,
            "steps": [asdict(s) for s in self.steps],
            "phases": [asdict(p) for p in marked],
        }
        text = summary_text(self.result)
        print(text, flush=True)
        # The conclusion in the log as well: the web UI's Logs tab shows the log, not the console.
        conclusion = text.splitlines()[len(self.steps) + 3:]
        log.info("capacity search: %s", "; ".join(conclusion))
        folder = self._folder()
        if folder:
            (folder / "capacity.json").write_text(json.dumps(self.result, indent=1))
        if self.on_done:
            self.on_done(self.result)
