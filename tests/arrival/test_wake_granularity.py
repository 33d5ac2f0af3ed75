"""Wake-up granularity: while instants are closer together than WAKE_GRANULARITY, acquire_due's caller
wakes at the granularity's next step and takes every instant due by then at that one wake-up; none
starts before its own instant, and each keeps its planned time."""

from __future__ import annotations

import math
import time

import gevent
import pytest
from gevent.lock import Semaphore

from generators.arrival import WAKE_GRANULARITY, Plan, RateProfile, Scheduler, Stage


def run_takers(s: Scheduler, takers: int, record: list, wakeups: list) -> list:
    """Takers as the tracking generator runs them: one at a time under a lock, in a loop."""
    turn = Semaphore()

    def taker() -> None:
        idle_since = time.monotonic()
        with turn:
            while True:
                called = time.monotonic()
                tickets = s.acquire_due(1000, idle_since)
                if not tickets:
                    return
                now = time.monotonic()
                record.extend((t, now) for t in tickets)
                wakeups.append((tickets[0], called, now))
                idle_since = tickets[-1].at
                gevent.sleep(0)

    return [gevent.spawn(taker) for _ in range(takers)]


def step_of(s: Scheduler, at: float, g: float) -> float:
    """The granularity step (from the plan's start) at or after the instant `at`."""
    return s.start_mono + math.ceil((at - s.start_mono) / g - 1e-9) * g


def test_dense_instants_start_together_at_the_next_step_never_before_their_own():
    s = Scheduler(Plan(RateProfile(2000), limit=300))  # 0.5 ms apart: ten per 5 ms step
    seen: list = []
    wakeups: list = []
    group = run_takers(s, 3, seen, wakeups)
    s.start()
    assert s.finished.wait(60)
    gevent.joinall(group, timeout=10)
    assert (s.planned, s.started + s.dropped) == (300, 300)
    assert [t.index for t, _ in seen] == list(range(300))  # each handed out once, in plan order
    assert all(got >= t.at for t, got in seen)  # never early
    assert len(wakeups) < 300  # several instants per wake-up


def test_a_wake_up_comes_at_the_step_and_takes_every_instant_due_by_then():
    # Nothing for 0.2 s, then this process's share of 4,000/s over two: 2,000/s with phase 1/2, its
    # first instant 0.25 ms into the burst, ten due by the burst's first step (5 ms later).
    s = Scheduler(Plan(RateProfile(0, [Stage(0, 0.2), Stage(4000, 0)]), process=1, processes=2, limit=100))
    s.start()
    tickets = s.acquire_due(1000)
    got = time.monotonic()
    step = s.start_mono + 0.2 + WAKE_GRANULARITY
    s.stop()
    assert got >= step - 1e-6 and all(t.at <= got for t in tickets)  # woke at the step; none early
    offsets = [round((t.at - s.start_mono - 0.2) * 4000) for t in tickets]
    assert offsets[:10] == list(range(1, 20, 2))  # the ten due by the step, in plan order
    assert all(abs(t.wall - s.start_wall - (t.at - s.start_mono)) < 1e-6 for t in tickets)  # own planned time


def test_only_instants_closer_than_the_granularity_wait_for_a_step():
    g = 0.01
    dense = Scheduler(Plan(RateProfile(2000)), granularity=g)  # 0.5 ms apart
    sparse = Scheduler(Plan(RateProfile(50)), granularity=g)  # 20 ms apart: a step would only delay them
    shared = Scheduler(Plan(RateProfile(2000), processes=40), granularity=g)  # 50/s in this process
    exact = Scheduler(Plan(RateProfile(2000)), granularity=0)
    schedulers = (dense, sparse, shared, exact)
    for s in schedulers:
        s.start()
    waits = [s.wake_time(0.0123) - s.start_mono for s in schedulers]
    for s in schedulers:
        s.stop()
    assert waits == pytest.approx([0.02, 0.0123, 0.0123, 0.0123], abs=1e-9)
