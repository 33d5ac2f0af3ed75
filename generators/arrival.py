"""Open-model arrivals: a plan of instants fixed by the target rate, and a scheduler handing them out.

Pure Python + gevent (no Locust), so the plan and the scheduler are unit-tested in-process.

The plan is exact: the target rate r(t) is piecewise linear (stages, k6 `ramping-arrival-rate`
semantics), its integral N(t) is the number of iterations due by t, and instant i is at
t_i = N⁻¹(u_i), with u_i = i + phase (evenly spaced) or the running sum of Exp(1) draws (a Poisson
process of intensity r(t)). A process that is one of `count` shares the load with rate r/count and
phase index/count, so the processes' instants interleave into the single-process plan.

The scheduler gives each idle user the next instant, which it sleeps until; an instant that comes
while no user is idle is dropped and counted (k6's dropped_iterations), never delayed. A late
wake-up keeps its instant, so none is lost: started + dropped = planned. A stopped plan's window
ends at the stop, or at the earliest instant claimed but not started if that is earlier.
"""

from __future__ import annotations

import math
import random
import re
import time
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import NamedTuple

import gevent
from gevent.event import Event

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

    def rate_at(self, offset: float) -> float:
        """The rate over all processes at `offset` s from the start."""
        return self.profile.rate(offset)

    def instants(self) -> Iterator[float]:
        rng = random.Random(None if self.seed is None else self.seed * 1_000_003 + self.process)
        poisson = self.arrival == POISSON
        draw = rng.expovariate
        u = draw(1.0) if poisson else self.process / self.processes
        left = math.inf if self.limit is None else self.limit
        # Segment by segment (u only grows), a constant rate as a fast path: this runs once per
        # iteration of the generator.
        for seg in self.mine.segments:
            end_u = math.inf if seg.end == math.inf else seg.count(seg.end)
            if seg.slope == 0 and seg.rate0 == 0:
                if end_u == math.inf:
                    return  # the rate stays 0: the plan is over
                continue
            start, before, rate, constant = seg.start, seg.before, seg.rate0, seg.slope == 0
            while u < end_u:
                if left <= 0:
                    return
                yield start + (u - before) / rate if constant else seg.inverse(u)
                left -= 1
                u += draw(1.0) if poisson else 1.0

    def duration(self, instants: int) -> float:
        """The planned window holding the first `instants` instants when the plan ran out after them
        (with a shared limit: the window of all processes' instants, the same in each)."""
        t = self.mine.time_of(instants if self.limit_total is None else self.limit_total / self.processes)
        return t if t != math.inf else self.mine.segments[-1].start


@dataclass
class LivePlan:
    """A plan whose rate is changed while it runs (a capacity search steps it): `set_rate` ramps the
    rate (over all processes) linearly from its value at offset `at` to a new one over `ramp` seconds,
    then holds it. N(t) stays continuous across changes, so each process keeps its share and phase
    (the processes' instants interleave when every process applies a change at the same offset).
    Instants already handed out keep their times: a change applies from the next instant pulled.
    The rate must stay > 0 (a plan at rate 0 would be over)."""

    rate: float  # the starting rate over all processes
    process: int = 0
    processes: int = 1
    arrival: str = EVEN
    seed: int | None = None
    limit: int | None = None  # unused: a live plan runs until it is stopped
    limit_total: int | None = None

    def __post_init__(self) -> None:
        if self.arrival not in (EVEN, POISSON):
            raise ValueError(f"arrival {self.arrival!r}: expected {EVEN} or {POISSON}")
        if not self.rate > 0:
            raise ValueError(f"live plan rate {self.rate}: expected > 0")
        # Pieces (at, n0, profile): from offset `at` (this process's count `n0` then) follow `profile`.
        self._pieces: list[tuple[float, float, RateProfile]] = [(0.0, 0.0, RateProfile(self.rate / self.processes))]

    def _piece_at(self, offset: float) -> tuple[float, float, RateProfile]:
        return next(p for p in reversed(self._pieces) if p[0] <= offset or p is self._pieces[0])

    def rate_at(self, offset: float) -> float:
        """The rate over all processes at `offset` s from the start."""
        at, _n0, profile = self._piece_at(offset)
        return profile.rate(max(offset - at, 0.0)) * self.processes

    def count(self, offset: float) -> float:
        """This process's instants due by `offset` (N(t) of its share)."""
        at, n0, profile = self._piece_at(offset)
        return n0 + profile.count(max(offset - at, 0.0))

    def set_rate(self, rate: float, at: float, ramp: float = 0.0) -> None:
        """From `at` s after the start, ramp linearly to `rate` (over all processes) in `ramp` s.
        A change at an offset before an earlier change's replaces it."""
        if not rate > 0:
            raise ValueError(f"live plan rate {rate}: expected > 0")
        at = max(at, 0.0)
        n0, r0 = self.count(at), self.rate_at(at) / self.processes
        self._pieces = [p for p in self._pieces if p[0] < at or p is self._pieces[0]]
        self._pieces.append((at, n0, RateProfile(r0, [Stage(rate / self.processes, max(ramp, 0.0))])))

    def _time_of(self, u: float) -> float:
        at, n0, profile = next(p for p in reversed(self._pieces) if p[1] <= u or p is self._pieces[0])
        return at + profile.time_of(u - n0)

    def instants(self) -> Iterator[float]:
        rng = random.Random(None if self.seed is None else self.seed * 1_000_003 + self.process)
        poisson = self.arrival == POISSON
        u = rng.expovariate(1.0) if poisson else self.process / self.processes
        while True:
            yield self._time_of(u)
            u += rng.expovariate(1.0) if poisson else 1.0

    def duration(self, instants: int) -> float:
        return self._pieces[-1][0]  # never exhausted: the scheduler's window ends at its stop


class Ticket(NamedTuple):
    """One iteration's planned instant: `at` on the monotonic clock, `wall` as time.time()."""

    index: int
    at: float
    wall: float


SWEEP_INTERVAL = 0.25  # s between counts of the instants that passed while every user was busy
# acquire_due's callers only queue work: an instant that came while one queued is taken at its next
# turn, late (its latency counts from its planned instant); one this late is dropped instead (the
# generator's CPU, not its users, cannot keep up: the rate is not offered).
TAKER_MAX_LATENESS = 1.0
# Most instants acquire_due() hands out at once: a taker behind its plan yields to the loop between
# batches (its sender's own greenlet writes and reads meanwhile) instead of holding it for all of them.
TAKE_MAX = 1000
# The loop cannot wake for instants closer than this: libev's epoll backend waits in whole milliseconds.
WAKE_RESOLUTION = 0.001
# acquire_due wakes its caller at most once per WAKE_GRANULARITY: while this process's instants are
# closer together than that (its rate above 1/WAKE_GRANULARITY, 200/s), it sleeps until the next
# multiple of it from the plan's start and takes every instant due by then at that one wake-up (each up
# to this late, never early, keeping its own planned time). One wake-up of the loop costs 75-170 µs of
# CPU on this VM; an evenly spaced plan at 2,000/s woke it every millisecond. (Per-user acquire() wakes
# at each instant: stepping it was measured not to lower its CPU in a Locust run.)
WAKE_GRANULARITY = 0.005


@dataclass
class Scheduler:
    """Hands the plan's instants to idle users; counts planned, started and dropped iterations.

    Users pull: a user that becomes idle claims the earliest instant not yet claimed and sleeps
    until it (one timer per iteration, as a wait_time would cost). An instant that came while no
    user was idle (before the claiming user became idle) is dropped and counted; so is one a
    sweeper greenlet finds past and unclaimed, so drops show while every user is busy. A user idle
    since before its instant keeps it even when it wakes late (a busy loop), so none is lost.
    Callers of acquire_due (they only queue work) take the instants that came meanwhile at their
    next turn; the sweeper drops those TAKER_MAX_LATENESS late. `on_drop(n)`: n more were dropped.
    """

    plan: Plan
    on_drop: Callable[[int], None] | None = None
    granularity: float = WAKE_GRANULARITY  # s (acquire_due); 0: its caller wakes at each instant
    planned: int = 0  # instants whose time came: started + dropped
    started: int = 0  # instants a user took at (or after) their time
    dropped: int = 0
    lateness_max: float = 0.0  # worst delay between an instant and its user's wake-up, s
    start_mono: float | None = None
    start_wall: float | None = None
    stopped_at: float | None = None  # the window's end, s from the start
    finished: Event = field(default_factory=Event)  # the plan ran out (a limit) or the scheduler stopped
    exhausted: bool = False  # the plan ran out before the run stopped
    _begun: Event = field(default_factory=Event)  # the start instant came
    _instants: Iterator[float] | None = None
    _next: int = 0  # index of the next instant to pull from the plan
    _claims: dict = field(default_factory=dict)  # index -> offset of instants claimed, not yet started
    _handed: dict = field(default_factory=dict)  # index -> offset of instants handed over (defer), not yet begun
    _no_more: bool = False  # the plan's iterator is spent
    _pending: deque = field(default_factory=deque)  # claimed by the sweeper for the next idle user
    _greenlet: object = None
    _started_until: float = 0.0  # just past the latest instant started (acquire_due's may be ahead of now), s
    _taker: bool = False  # instants are taken with acquire_due(): late ones are taken, up to TAKER_MAX_LATENESS
    _unreported: int = 0  # drops not yet passed to on_drop
    _starting: int = 0  # callers waiting for the start (or woken by it, not yet run)
    _slept: bool = False  # the last acquire() waited for its instant (else it was due already: behind)
    _behind: bool = False  # acquire_due()'s last instant was due when it was taken

    # -- start, stop ---------------------------------------------------------------------------
    def start(self, at_wall: float | None = None) -> None:
        """Start the plan now, or at the wall-clock time `at_wall` (a shared start across processes)."""
        if self.start_mono is not None:
            return
        now_mono, now_wall = time.monotonic(), time.time()
        delay = 0.0 if at_wall is None else max(at_wall - now_wall, 0.0)
        self.start_mono, self.start_wall = now_mono + delay, now_wall + delay
        self._instants = self.plan.instants()
        self._greenlet = gevent.spawn(self._sweep, delay)

    def _sweep(self, delay: float) -> None:
        if delay:
            gevent.sleep(delay)
        self._begun.set()
        while not self.finished.is_set():
            gevent.sleep(SWEEP_INTERVAL)
            if self.finished.is_set():
                return
            self._drop_until(time.monotonic() - (TAKER_MAX_LATENESS if self._taker else 0.0))
            self._check_exhausted()

    def stop(self) -> None:
        """Plan no more instants (the run ends); waiting users get None. The window ends now, or at
        the earliest instant claimed but not started if that is earlier: a loop busy stopping the run
        turns no instant into a drop, and claimed instants beyond the window are not planned.
        An instant handed over but not begun (see acquire's `defer`) counts as claimed: its work
        did not start. The window always holds every instant started: users may wake out of plan
        order (one the OS paused while arming its timer oversleeps its instant as the next one
        starts), and a claimed instant earlier than one started did not start in time: it is dropped."""
        if self.finished.is_set():
            return
        if self._greenlet is not None and not self._greenlet.dead:
            self._greenlet.kill(block=False)  # not a yield: no user may start an instant during the stop
        if self.start_mono is not None:
            elapsed = max(time.monotonic() - self.start_mono, 0.0)
            end = max(min([elapsed, *self._claims.values(), *self._handed.values()]), self._started_until)
            self.stopped_at = end
            for held in (self._claims, self._handed):
                for index in [i for i, offset in held.items() if offset < end]:
                    self._drop(index, held.pop(index))
            self._handed.clear()  # beyond the window: not planned (their users get False from begin)
            self._report_drops()
        self._end()

    def _end(self) -> None:
        self.finished.set()
        self._begun.set()  # users waiting for the start get None

    # -- the plan ------------------------------------------------------------------------------
    def _pull(self) -> float | None:
        offset = next(self._instants, None) if not self._no_more else None
        if offset is None:
            self._no_more = True
        return offset

    def _drop(self, index: int, offset: float) -> None:
        self.planned += 1
        self.dropped += 1
        self._unreported += 1

    def _report_drops(self) -> None:
        # Once per batch of drops: a saturated generator drops thousands per second.
        n, self._unreported = self._unreported, 0
        if n and self.on_drop is not None:
            self.on_drop(n)

    def _drop_until(self, before: float) -> None:
        """Drop the unclaimed instants earlier than the monotonic time `before`."""
        try:
            while self._pending and self.start_mono + self._claims[self._pending[0]] < before:
                index = self._pending.popleft()
                self._drop(index, self._claims.pop(index))
            if self._pending:
                return
            while not self._no_more:
                offset = self._pull()
                if offset is None:
                    return
                index, self._next = self._next, self._next + 1
                if self.start_mono + offset >= before:
                    self._claims[index] = offset  # not due: kept for the next idle user
                    self._pending.append(index)
                    return
                self._drop(index, offset)
        finally:
            self._report_drops()

    def _check_exhausted(self) -> None:
        if self._no_more and not self._claims and not self._handed and not self.finished.is_set():
            self.exhausted = True
            self.stopped_at = self.plan.duration(self.planned)
            self._end()

    # -- the users' side -----------------------------------------------------------------------
    def acquire(self, idle_since: float | None = None, stepped: bool = False, defer: bool = False) -> Ticket | None:
        """Wait until this caller's instant comes; None when the plan is over. `idle_since`: when the
        caller became idle, if before this call (it waited its turn to call). `stepped`: wake at
        wake_time() (acquire_due's callers), not at the instant itself. `defer`: the instant is only
        handed over; it starts at begin() (the caller's work may yet be killed before it runs: a
        Locust user yields once between its wait_time and its task), or release() gives it back."""
        if idle_since is None:
            idle_since = time.monotonic()
        if not self._begun.is_set():
            self._starting += 1
            try:
                self._begun.wait()
                claimed = self._claim(self.start_mono)  # idle since before the start: every instant is theirs
            finally:
                self._starting -= 1
        else:
            while self._starting and not self.finished.is_set():
                # Callers idle since the start that the loop has not run yet: the instants that came
                # meanwhile are theirs, not dropped because this caller became idle after them.
                gevent.sleep(0)
            claimed = self._claim(idle_since)
        if claimed is None:
            return None
        index, offset = claimed
        at = self.start_mono + offset
        self._slept = False
        try:
            if (now := time.monotonic()) < at:
                wake = self.wake_time(offset) if stepped else at
                # libev starts timers from the loop's cached time, older than the clock: refresh it, or
                # the timer fires early and a second sleep is needed (a busy loop's cache can be far behind).
                loop = gevent.get_hub().loop
                self._slept = True
                while now < at:
                    loop.update_now()
                    gevent.sleep(wake - now)
                    now = time.monotonic()
        except BaseException:
            # Killed before its instant (the run stops, or the user count shrinks): a stopped run's
            # window ends before it; otherwise the instant is lost to the plan, so it counts as dropped.
            self._claims.pop(index, None)
            if not self.finished.is_set():
                self._lose(index, offset)
            raise
        self._claims.pop(index, None)
        if self.finished.is_set():
            return None  # the run stopped while this user slept: stop() put its instant outside the window or dropped it
        self.lateness_max = max(self.lateness_max, time.monotonic() - at)
        if defer:
            self._handed[index] = offset
        else:
            self._started(offset)
        return Ticket(index, at, self.start_wall + offset)

    def _claim(self, idle_since: float) -> tuple[int, float] | None:
        """The earliest instant no caller holds that came after `idle_since`, now claimed; the ones
        before it are dropped. None when the plan is over. Never yields."""
        if self.finished.is_set():
            return None
        while True:
            if self._pending:  # an instant the sweeper pulled before its time
                index = self._pending.popleft()
                offset = self._claims.pop(index)
            else:
                offset = self._pull()
                if offset is None:
                    self._report_drops()
                    self._check_exhausted()
                    return None
                index, self._next = self._next, self._next + 1
            if self.start_mono + offset >= idle_since - 1e-9:
                break
            self._drop(index, offset)  # it came while this user (and every other) was busy
        self._report_drops()
        self._claims[index] = offset
        return index, offset

    def _started(self, offset: float) -> None:
        self.planned += 1
        self.started += 1
        if offset >= self._started_until:
            self._started_until = math.nextafter(offset, math.inf)

    def begin(self, ticket: Ticket) -> bool:
        """The work of an instant handed over (acquire's `defer`) starts now: it counts as started.
        False when the run stopped first (the stop put it outside the window, or dropped it)."""
        offset = self._handed.pop(ticket.index, None)
        if offset is None:
            return False
        self._started(offset)
        if self._no_more:
            self._check_exhausted()
        return True

    def release(self, ticket: Ticket) -> None:
        """An instant handed over whose work will never run (its user was killed first): mid-run it
        is lost to the plan, so dropped; a stopped run already counted it."""
        offset = self._handed.pop(ticket.index, None)
        if offset is not None and not self.finished.is_set():
            self._lose(ticket.index, offset)

    def _lose(self, index: int, offset: float) -> None:
        # An instant a caller gave up mid-run (killed before its work ran) is lost to the plan: dropped.
        self._drop(index, offset)
        self._report_drops()
        self._check_exhausted()

    def wake_time(self, offset: float) -> float:
        """When a user holding the instant at `offset` wakes (monotonic): while this process's instants
        are closer together than the granularity, its next step from the plan's start, so the instants
        due by then start at one wake-up of the loop; else the instant itself. Never before it."""
        at, g = self.start_mono + offset, self.granularity
        if g <= 0 or self.plan.rate_at(offset) * g <= self.plan.processes:
            return at
        return max(at, self.start_mono + math.ceil(offset / g) * g)

    def acquire_due(self, most: int, idle_since: float | None = None, lookahead: float = 0.0) -> list[Ticket]:
        """acquire(), then also the instants that follow it and are due by the time it wakes (the loop
        wakes in whole milliseconds: at 2,000/s about two of them), or due within `lookahead` (up to
        WAKE_RESOLUTION, to start instants closer than the loop can wake for in one go, at most that
        much early), at most `most` (and TAKE_MAX) in all, each with its own planned time. [] when the
        plan is over. A caller whose previous call found its instant already due (it is behind the
        plan) first yields to the loop once, so the greenlets its work feeds run between its batches.

        It takes the following instants only while no other caller holds a claim: theirs are earlier,
        so taking later ones would start instants out of order. A caller that takes instants one
        batch at a time (one at a time under a lock, as the tracking generator does) starts them in
        plan order with one wake-up for all the instants of a loop's turn."""
        self._taker = True
        if self._behind:
            gevent.sleep(0)  # before claiming anything: a kill here loses no instant
        first = self.acquire(idle_since, stepped=True)
        if first is None:
            return []
        self._behind = not self._slept
        most = min(most, TAKE_MAX)
        out = [first]
        horizon = time.monotonic() + lookahead - self.start_mono
        stop = self.stopped_at if self.finished.is_set() else None
        while len(out) < most and len(self._claims) == len(self._pending):
            if self._pending:
                index = self._pending[0]
                offset = self._claims[index]
                if offset > horizon or (stop is not None and offset >= stop):
                    break
                self._pending.popleft()
                del self._claims[index]
            else:
                offset = self._pull()
                if offset is None:
                    break
                index, self._next = self._next, self._next + 1
                if offset > horizon or (stop is not None and offset >= stop):
                    self._claims[index] = offset  # not due: kept for the next caller
                    self._pending.append(index)
                    break
            self._started(offset)
            out.append(Ticket(index, self.start_mono + offset, self.start_wall + offset))
        return out

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
