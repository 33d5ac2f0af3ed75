"""Open-model arrivals: a plan of instants fixed by the target rate, and a scheduler handing them out.

Pure Python + gevent (no Locust), so the plan and the scheduler are unit-tested in-process.

The plan is exact: the target rate r(t) is piecewise linear (stages, k6 `ramping-arrival-rate`
semantics), its integral N(t) is the number of iterations due by t, and instant i is at
t_i = N⁻¹(u_i), with u_i = i + phase (evenly spaced) or the running sum of Exp(1) draws (a Poisson
process of intensity r(t)). A process that is one of `count` shares the load with rate r/count and
phase index/count, so the processes' instants interleave into the single-process plan.

The scheduler sleeps until each instant and hands it to a user waiting for one; when no user is
waiting the iteration is dropped and counted (k6's dropped_iterations), never delayed. A late
wake-up dispatches every instant already due, so none is lost: started + dropped = planned. A
stopped plan's window ends at the first instant the scheduler had not reached.
"""

from __future__ import annotations

import math
import random
import re
import time
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import gevent
from gevent.event import AsyncResult, Event

EVEN, POISSON = "even", "poisson"
_STAGE = re.compile(r"^\s*([0-9]*\.?[0-9]+)\s*:\s*([0-9]*\.?[0-9]+)\s*(ms|s|m|h)?\s*$")
_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, None: 1.0}


@dataclass(frozen=True)
class Stage:
    rate: float  # iterations/s reached at the end of the stage (a linear ramp from the previous rate)
    duration: float  # seconds


def parse_stages(text: str) -> list[Stage]:
    """`100:30s,1000:60s` -> stages; a rate is reached linearly over its duration (0s: a step)."""
    stages = []
    for part in text.split(","):
        m = _STAGE.match(part)
        if not m:
            raise ValueError(f"--rate-stages {text!r}: expected RATE:DURATION[,…] such as 100:30s,1000:1m")
        stages.append(Stage(float(m.group(1)), float(m.group(2)) * _UNITS[m.group(3)]))
    return stages


@dataclass(frozen=True)
class Segment:
    start: float  # s from the plan's start
    end: float  # math.inf for the hold after the last stage
    rate0: float  # rate at start
    slope: float  # rate change per second
    before: float  # N(start)

    def count(self, t: float) -> float:
        dt = min(t, self.end) - self.start
        return self.before + self.rate0 * dt + 0.5 * self.slope * dt * dt

    def inverse(self, u: float) -> float:
        """The time at which N reaches u (u within this segment)."""
        d = u - self.before
        if d <= 0:
            return self.start
        # 2d / (r0 + sqrt(r0² + 2·a·d)): the quadratic's root without cancellation for either sign of a.
        root = math.sqrt(max(self.rate0 * self.rate0 + 2 * self.slope * d, 0.0))
        return self.start + 2 * d / (self.rate0 + root)


class RateProfile:
    """r(t): `start_rate` ramped through `stages`, then held at the last rate for ever."""

    def __init__(self, start_rate: float, stages: list[Stage] | None = None) -> None:
        self.segments: list[Segment] = []
        t, rate, n = 0.0, float(start_rate), 0.0
        for s in stages or []:
            if s.duration > 0:
                seg = Segment(t, t + s.duration, rate, (s.rate - rate) / s.duration, n)
                self.segments.append(seg)
                n = seg.count(seg.end)
                t = seg.end
            rate = s.rate
        self.segments.append(Segment(t, math.inf, rate, 0.0, n))
        self.final_rate = rate

    def scaled(self, factor: float) -> RateProfile:
        out = RateProfile.__new__(RateProfile)
        out.segments = [Segment(s.start, s.end, s.rate0 * factor, s.slope * factor, s.before * factor)
                        for s in self.segments]
        out.final_rate = self.final_rate * factor
        return out

    def rate(self, t: float) -> float:
        for s in self.segments:
            if t < s.end:
                return s.rate0 + s.slope * (t - s.start)
        return self.final_rate

    def count(self, t: float) -> float:
        """N(t): iterations due in [0, t]."""
        for s in self.segments:
            if t <= s.end:
                return s.count(t)
        return self.segments[-1].count(t)

    def time_of(self, u: float) -> float:
        """N⁻¹(u), or math.inf when the rate never reaches that many iterations."""
        for s in self.segments:
            if s.end == math.inf:
                return s.inverse(u) if s.rate0 > 0 else math.inf
            if s.before <= u < s.count(s.end):
                return s.inverse(u)
        return math.inf


@dataclass
class Plan:
    """This process's instants: offsets in seconds from the plan's start, at most `limit` of them."""

    profile: RateProfile  # the rate over all processes
    process: int = 0
    processes: int = 1
    arrival: str = EVEN
    seed: int | None = None
    limit: int | None = None  # instants of this process (e.g. its share of --num-events)
    limit_total: int | None = None  # instants over all processes, when `limit` is a share of them

    def __post_init__(self) -> None:
        if self.arrival not in (EVEN, POISSON):
            raise ValueError(f"arrival {self.arrival!r}: expected {EVEN} or {POISSON}")
        self.mine = self.profile.scaled(1 / self.processes)

    def instants(self) -> Iterator[float]:
        rng = random.Random(None if self.seed is None else self.seed * 1_000_003 + self.process)
        u = self.process / self.processes if self.arrival == EVEN else 0.0
        i = 0
        while self.limit is None or i < self.limit:
            if self.arrival == POISSON:
                u += rng.expovariate(1.0)
            t = self.mine.time_of(u)
            if t == math.inf:
                return
            yield t
            i += 1
            if self.arrival == EVEN:
                u += 1.0

    def duration(self, instants: int) -> float:
        """The planned window holding the first `instants` instants when the plan ran out after them
        (with a shared limit: the window of all processes' instants, the same in each)."""
        t = self.mine.time_of(instants if self.limit_total is None else self.limit_total / self.processes)
        return t if t != math.inf else self.mine.segments[-1].start


@dataclass(frozen=True)
class Ticket:
    """One iteration's planned instant: `at` on the monotonic clock, `wall` as time.time()."""

    index: int
    at: float
    wall: float


@dataclass
class Scheduler:
    """Hands the plan's instants to idle users; counts planned, started and dropped iterations."""

    plan: Plan
    on_drop: Callable[[Ticket], None] | None = None
    planned: int = 0
    started: int = 0  # tickets a user took (given back ones excluded)
    dropped: int = 0
    lateness_max: float = 0.0  # the scheduler's own worst wake-up delay, s
    start_mono: float | None = None
    start_wall: float | None = None
    stopped_at: float | None = None  # elapsed s at stop
    finished: Event = field(default_factory=Event)  # the plan ran out (a limit) or the scheduler stopped
    exhausted: bool = False  # the plan ran out before the run stopped
    _idle: deque = field(default_factory=deque)
    _greenlet: object = None
    _instants: Iterator[float] | None = None
    _pending: float | None = None  # the instant the scheduler sleeps for

    # -- the scheduler's side ------------------------------------------------------------------
    def start(self, at_wall: float | None = None) -> None:
        """Start the plan now, or at the wall-clock time `at_wall` (a shared start across processes)."""
        if self._greenlet is not None:
            return
        now_mono, now_wall = time.monotonic(), time.time()
        delay = 0.0 if at_wall is None else max(at_wall - now_wall, 0.0)
        self.start_mono, self.start_wall = now_mono + delay, now_wall + delay
        self._instants = self.plan.instants()
        self._greenlet = gevent.spawn(self._run)

    def _run(self) -> None:
        mono0, wall0 = self.start_mono, self.start_wall
        idle, clock = self._idle, time.monotonic
        for offset in self._instants:
            at = mono0 + offset
            now = clock()
            if at > now:
                self._pending = offset
                gevent.sleep(at - now)
                self._pending = None
                now = clock()
            self.lateness_max = max(self.lateness_max, now - at)
            ticket = Ticket(self.planned, at, wall0 + offset)
            self.planned += 1
            while idle:
                waiter = idle.popleft()
                if not waiter.ready():
                    self.started += 1
                    waiter.set(ticket)
                    break
            else:
                self.dropped += 1
                if self.on_drop is not None:
                    self.on_drop(ticket)
        self.exhausted = True
        self.stopped_at = self.plan.duration(self.planned)
        self._end()

    def _end(self) -> None:
        self.finished.set()
        while self._idle:  # users still waiting: the plan is over for them
            waiter = self._idle.popleft()
            if not waiter.ready():
                waiter.set(None)

    def stop(self) -> None:
        """Plan no more instants (the run ends); waiting users get None."""
        if self.finished.is_set():
            return
        if self._greenlet is not None and not self._greenlet.dead:
            self._greenlet.kill()
        if self.start_mono is not None:
            # The run's window ends now, or at the first instant the scheduler had not reached if that
            # is earlier: a loop busy stopping the run (or starved just before) does not turn the
            # instants of those last milliseconds into drops. Late instants reached before are counted.
            elapsed = max(time.monotonic() - self.start_mono, 0.0)
            upcoming = self._pending if self._pending is not None else next(self._instants or iter(()), None)
            self.stopped_at = elapsed if upcoming is None else min(elapsed, upcoming)
        self._end()

    # -- the users' side -----------------------------------------------------------------------
    def acquire(self) -> Ticket | None:
        """Wait until an instant is handed to this caller; None when the plan is over."""
        if self.finished.is_set():
            return None
        waiter = AsyncResult()
        self._idle.append(waiter)
        try:
            return waiter.get()
        except BaseException:
            # Killed while waiting (the run stops): leave the queue; a ticket already handed over is
            # given back as dropped, as it was never started.
            if waiter.ready() and waiter.successful() and waiter.value is not None:
                self.started -= 1
                self.dropped += 1
                if self.on_drop is not None:
                    self.on_drop(waiter.value)
            else:
                try:
                    self._idle.remove(waiter)
                except ValueError:
                    pass
            raise

    # -- figures -------------------------------------------------------------------------------
    def elapsed(self) -> float:
        if self.start_mono is None:
            return 0.0
        return self.stopped_at if self.stopped_at is not None else max(time.monotonic() - self.start_mono, 0.0)

    def summary(self) -> dict:
        """planned = started + dropped; the target is the plan's mean rate over the elapsed time."""
        elapsed = self.elapsed()
        return {"planned": self.planned, "started": self.started, "dropped": self.dropped,
                "duration_s": round(elapsed, 6), "start_wall": self.start_wall,
                "target_rate": round(self.planned / elapsed, 3) if elapsed > 0 else 0.0,
                "achieved_rate": round(self.started / elapsed, 3) if elapsed > 0 else 0.0,
                "scheduler_lateness_max_ms": round(self.lateness_max * 1000, 3)}
