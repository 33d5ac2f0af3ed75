"""The scheduler: every planned instant is started or dropped, never delayed and never lost.

Runs in-process on gevent (the scheduler imports no Locust); users are greenlets taking tickets.
"""

from __future__ import annotations

import time

import gevent

from generators.arrival import POISSON, Plan, RateProfile, Scheduler


def run_users(s: Scheduler, users: int, work: float = 0.0, record: list | None = None) -> list:
    def user() -> None:
        while True:
            ticket = s.acquire()
            if ticket is None:
                return
            if record is not None:
                record.append((ticket, time.monotonic()))
            if work:
                gevent.sleep(work)

    return [gevent.spawn(user) for _ in range(users)]


def test_a_plan_of_n_instants_is_started_exactly_n_times():
    s = Scheduler(Plan(RateProfile(400), limit=300))
    seen: list = []
    group = run_users(s, 20, record=seen)
    s.start()
    assert s.finished.wait(60)
    gevent.joinall(group, timeout=10)
    assert (s.planned, s.started + s.dropped) == (300, 300)
    assert sorted(t.index for t, _ in seen) == list(range(s.started))  # each instant handed out once


def test_users_idle_since_the_start_take_its_first_instants_while_another_is_busy():
    # The first user woken busies the loop for 50 ms (no yield) before its next call: instants 1-5
    # came meanwhile, but the other users were idle since the start and take them.
    s = Scheduler(Plan(RateProfile(100), limit=40))
    seen: list = []

    def user() -> None:
        while (ticket := s.acquire()) is not None:
            seen.append(ticket.index)
            if ticket.index == 0:
                time.sleep(0.05)

    group = [gevent.spawn(user) for _ in range(20)]
    gevent.sleep(0)  # all wait for the start
    s.start()
    assert s.finished.wait(60)
    gevent.joinall(group, timeout=10)
    assert (s.planned, s.started, s.dropped) == (40, 40, 0)
    assert sorted(seen) == list(range(40))


def test_no_ticket_is_handed_out_before_its_instant():
    s = Scheduler(Plan(RateProfile(200, []), arrival=POISSON, seed=1, limit=200))
    seen: list = []
    run_users(s, 10, record=seen)
    s.start()
    assert s.finished.wait(60)
    assert seen and all(got >= t.at for t, got in seen)
    assert all(abs(t.wall - s.start_wall - (t.at - s.start_mono)) < 1e-6 for t, _ in seen)


def test_a_slow_user_produces_drops_not_a_lower_rate():
    # 2 users each busy 50 ms per iteration serve at most ~40/s of a 200/s plan: the rest is dropped
    # at its instant, and the plan still ends on time with planned = started + dropped.
    s = Scheduler(Plan(RateProfile(200), limit=200))
    run_users(s, 2, work=0.05)
    s.start()
    assert s.finished.wait(60)
    assert s.planned == 200 and s.started + s.dropped == 200
    assert s.dropped > 0
    assert s.started <= 2 * (1.0 / 0.05) + 2  # gevent.sleep never returns early, on any machine
    assert s.summary()["duration_s"] == 1.0  # the plan's window, not the time the work took


def test_a_late_wake_up_dispatches_every_instant_already_due():
    s = Scheduler(Plan(RateProfile(1000), limit=400))
    run_users(s, 200)
    s.start()
    gevent.sleep(0.05)
    time.sleep(0.2)  # block the whole loop, as a busy generator would: ~200 instants fall due meanwhile
    assert s.finished.wait(60)
    assert (s.planned, s.started + s.dropped) == (400, 400)
    assert s.lateness_max >= 0.15


def test_a_stopped_plan_ends_its_window_at_the_first_instant_not_reached():
    s = Scheduler(Plan(RateProfile(1000)))  # no limit: runs until stopped
    seen: list = []
    run_users(s, 100, record=seen)  # claims 100 ms ahead: a stall of the machine drops nothing
    s.start()
    gevent.sleep(0.1)
    blocked_at = time.monotonic()
    time.sleep(0.3)  # the loop is busy stopping the run: the scheduler cannot wake before the stop
    ready: list = []
    gevent.spawn(ready.append, True)  # a greenlet ready to run, as a user resuming from sleep(0)
    s.stop()
    assert not ready  # stop() does not yield: no user starts an instant while the run stops
    # The blocked 300 ms are not turned into drops: the window ends at the first instant not started,
    # and no user claimed an instant more than 100 ms ahead of the block. (A stall of a loaded machine
    # before the block may drop instants inside the window: that is a real shortfall, counted.)
    window = s.summary()["duration_s"]
    assert window <= blocked_at - s.start_mono + 0.1 + 0.002
    assert s.started == len(seen) > 0 and s.started + s.dropped == s.planned
    assert all(t.at - s.start_mono <= window + 1e-6 for t, _ in seen)  # to the µs it is given in


def test_an_instant_claimed_before_one_started_but_not_started_by_the_stop_is_dropped():
    # Users may wake out of plan order (the OS pauses one while it arms its timer): when the run
    # stops, an instant started is inside the window, and an earlier one not started is dropped.
    # A user stepped by 1 s is the oversleeper here.
    s = Scheduler(Plan(RateProfile(100), limit=10), granularity=1.0)
    first, oversleeper, third = (gevent.spawn(s.acquire, stepped=stepped) for stepped in (False, True, False))
    gevent.sleep(0)  # all three wait for the start, in this order
    s.start()
    third.join(10)
    s.stop()
    oversleeper.join(10)  # wakes with None: its instant was dropped
    window = s.summary()["duration_s"]
    assert (first.value.index, oversleeper.value, third.value.index) == (0, None, 2)
    assert third.value.at - s.start_mono <= window + 1e-6 < 0.03  # to the µs it is given in
    assert (s.planned, s.started, s.dropped) == (3, 2, 1)


def test_a_user_killed_while_waiting_leaves_the_queue_and_its_instant_is_not_lost():
    s = Scheduler(Plan(RateProfile(100), limit=50))
    doomed = run_users(s, 3)
    gevent.sleep(0)  # all three wait for a ticket
    gevent.killall(doomed)
    seen: list = []
    survivors = run_users(s, 50, record=seen)
    s.start()
    assert s.finished.wait(60)
    gevent.joinall(survivors, timeout=10)
    # Every instant reached a living user or was counted dropped (a stall of the machine may drop
    # some: that is the plan's rule, not the killed users' doing); none went to a dead one.
    assert len(seen) == s.started and s.started + s.dropped == 50


def test_waiting_users_get_none_when_the_plan_is_over():
    s = Scheduler(Plan(RateProfile(100), limit=3))
    group = run_users(s, 4)
    s.start()
    gevent.joinall(group, timeout=30)
    assert all(g.dead for g in group) and s.acquire() is None
