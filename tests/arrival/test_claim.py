"""Scheduler.claim/begin/release: a caller that does its own single sleep (Locust's wait(), through
open_model.attach) still starts every instant or drops it, counted, and never before its time."""

from __future__ import annotations

import time

import gevent

from generators.arrival import Plan, RateProfile, Scheduler


def claiming_users(s: Scheduler, users: int, record: list, work: float = 0.0) -> list:
    def user() -> None:
        while (ticket := s.claim()) is not None:
            try:
                gevent.sleep(max(ticket.at - time.monotonic(), 0.0))
            except BaseException:
                s.release(ticket)
                raise
            if s.begin(ticket):
                record.append((ticket, time.monotonic()))
            if work:
                gevent.sleep(work)

    return [gevent.spawn(user) for _ in range(users)]


def test_claimed_instants_are_begun_once_each_and_never_early():
    s = Scheduler(Plan(RateProfile(400), limit=300))
    seen: list = []
    group = claiming_users(s, 20, seen)
    s.start()
    assert s.finished.wait(60)
    gevent.joinall(group, timeout=10)
    assert (s.planned, s.started + s.dropped) == (300, 300)
    assert sorted(t.index for t, _ in seen) == list(range(s.started)) and s.started == len(seen)
    assert all(got >= t.at for t, got in seen)


def test_a_begin_woken_before_its_instant_sleeps_the_rest():
    s = Scheduler(Plan(RateProfile(10), limit=2))
    s.start()
    assert s.begin(s.claim())  # the first instant is at the start
    ticket = s.claim()  # 0.1 s later
    assert s.begin(ticket) and time.monotonic() >= ticket.at  # no sleep by the caller at all
    assert (s.planned, s.started) == (2, 2)


def test_a_user_killed_while_sleeping_gives_its_instant_back_as_dropped():
    s = Scheduler(Plan(RateProfile(100), limit=50))
    seen: list = []
    doomed = claiming_users(s, 3, seen)
    s.start()
    gevent.sleep(0.005)  # the three have claimed the first instants and sleep until them
    gevent.killall(doomed)
    survivors = claiming_users(s, 50, seen)
    assert s.finished.wait(60)
    gevent.joinall(survivors, timeout=10)
    assert s.dropped >= 3 and len(seen) == s.started and s.started + s.dropped == 50


def test_a_release_after_the_stop_is_outside_the_window_not_a_drop():
    s = Scheduler(Plan(RateProfile(10)))
    s.start()
    assert s.begin(s.claim())
    ticket = s.claim()  # 0.1 s ahead
    s.stop()
    s.release(ticket)
    assert not s.begin(ticket)
    assert (s.planned, s.started, s.dropped) == (1, 1, 0)
    assert s.summary()["duration_s"] <= ticket.at - s.start_mono


def test_a_claim_the_run_stopped_before_is_not_begun():
    s = Scheduler(Plan(RateProfile(10)))
    s.start()
    assert s.begin(s.claim())
    ticket = s.claim()  # 0.1 s ahead
    s.stop()
    assert not s.begin(ticket) and (s.planned, s.started) == (1, 1)
