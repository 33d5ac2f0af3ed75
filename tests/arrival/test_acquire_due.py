"""Scheduler.acquire_due: the instants due at one wake-up taken at once, each with its own planned time,
in plan order, and the plan's count kept (planned = started + dropped)."""

from __future__ import annotations

import time

import gevent
from gevent.lock import Semaphore

from generators.arrival import WAKE_RESOLUTION, Plan, RateProfile, Scheduler


def run_takers(s: Scheduler, takers: int, record: list, wakeups: list, work: float = 0.0,
               lookahead: float = 0.0) -> list:
    """Takers as the tracking generator runs them: one at a time under a lock, in a loop."""
    turn = Semaphore()

    def taker() -> None:
        idle_since = time.monotonic()
        with turn:
            while tickets := s.acquire_due(1000, idle_since, lookahead):
                now = time.monotonic()
                wakeups.append(len(tickets))
                record.extend((t, now) for t in tickets)
                idle_since = tickets[-1].at
                if work:
                    time.sleep(work)  # the whole loop busy, as a long burst of sends would make it

    return [gevent.spawn(taker) for _ in range(takers)]


def test_every_instant_is_started_once_in_plan_order_with_its_own_planned_time():
    s = Scheduler(Plan(RateProfile(5000), limit=2000))
    seen: list = []
    wakeups: list = []
    group = run_takers(s, 5, seen, wakeups)
    s.start()
    assert s.finished.wait(60)
    gevent.joinall(group, timeout=10)
    assert (s.planned, s.started, s.dropped) == (2000, 2000, 0)
    assert [t.index for t, _ in seen] == list(range(2000))  # in plan order, each once
    assert all(abs(t.wall - s.start_wall - (t.at - s.start_mono)) < 1e-6 for t, _ in seen)
    assert all(got >= t.at for t, got in seen)  # none before its instant


def test_a_lookahead_starts_instants_at_most_that_much_early():
    s = Scheduler(Plan(RateProfile(5000), limit=1000))
    seen: list = []
    wakeups: list = []
    run_takers(s, 2, seen, wakeups, lookahead=WAKE_RESOLUTION)
    s.start()
    assert s.finished.wait(60)
    assert (s.planned, s.started) == (1000, 1000)
    assert [t.index for t, _ in seen] == list(range(1000))
    assert all(got >= t.at - WAKE_RESOLUTION for t, got in seen)
    assert max(wakeups) >= 2  # instants 0.2 ms apart: several per wake-up


def test_one_wake_up_takes_every_instant_due_after_a_stall():
    s = Scheduler(Plan(RateProfile(2000), limit=600))
    seen: list = []
    wakeups: list = []
    run_takers(s, 3, seen, wakeups, work=0.05)  # each turn blocks the loop 50 ms: ~100 instants fall due
    s.start()
    assert s.finished.wait(60)
    assert (s.planned, s.started + s.dropped) == (600, 600)
    assert s.dropped == 0  # a busy loop delays the instants of an idle taker, it does not drop them
    assert max(wakeups) >= 50
    assert [t.index for t, _ in seen] == list(range(600))


def test_a_stopped_plan_hands_out_no_instant_beyond_its_window():
    s = Scheduler(Plan(RateProfile(1000)))
    seen: list = []
    run_takers(s, 2, seen, [], lookahead=WAKE_RESOLUTION)  # instants started ahead are in the window too
    s.start()
    gevent.sleep(0.3)
    s.stop()
    gevent.sleep(0.05)
    assert s.finished.is_set()
    assert s.started == len(seen) and s.planned == s.started + s.dropped
    assert all(t.at - s.start_mono < s.stopped_at + 1e-9 for t, _ in seen)  # (start + offset) - start: rounding
