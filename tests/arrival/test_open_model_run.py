"""The open model in a Locust run: planned instants started or dropped, DROPPED rows, the rate check."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from tests.helpers import log_of, run_locust

LOCUSTFILE = str(Path(__file__).with_name("open_locustfile.py"))


def run(tmp_path: Path, *args: str):
    done = run_locust(["-f", LOCUSTFILE, "--headless", "--no-monitor", "--json-file",
                       str(tmp_path / "stats"), *args], timeout=120)
    m = re.search(r"open model: planned ([\d,]+), started ([\d,]+), dropped ([\d,]+)", done.stderr)
    assert m, log_of(done.stderr)
    planned, started, dropped = (int(g.replace(",", "")) for g in m.groups())
    rows = {(r["method"], r["name"]): r for r in json.loads((tmp_path / "stats.json").read_text())}
    return done, (planned, started, dropped), rows


def tally(text: str) -> tuple[int, int, int]:
    found = [tuple(map(int, m)) for m in re.findall(r"noop tally: (\d+) requests, (\d+) with planned_start, "
                                                     r"(\d+) before it", text)]
    return tuple(sum(t[i] for t in found) for i in range(3))


def test_every_planned_instant_is_started_once_or_dropped(tmp_path):
    done, (planned, started, dropped), rows = run(tmp_path, "-u", "20", "-r", "20", "-t", "6s", "--noop-rate", "100",
                                                  "--noop-iterations", "250")
    assert done.returncode == 0, log_of(done.stderr)
    assert planned == 250 and started + dropped == 250
    assert rows[("NOOP", "noop")]["num_requests"] == started
    assert rows.get(("DROPPED", "noop"), {"num_requests": 0})["num_requests"] == dropped


def test_each_request_carries_its_planned_instant_and_never_starts_before_it(tmp_path):
    done, (_p, started, _d), _rows = run(tmp_path, "-u", "20", "-r", "20", "-t", "6s", "--noop-rate", "100",
                                         "--noop-iterations", "200", "--arrival", "poisson")
    assert done.returncode == 0, log_of(done.stderr)
    assert tally(done.stderr) == (started, started, 0)


def test_a_stop_that_comes_before_its_task_starts_leaves_that_instant_out(tmp_path):
    # Locust yields once between a user's wait_time and its task: the stop runs there, so the task
    # begins after the plan's window ended. It sends nothing, and its instant is not counted started.
    # 50 instants are handed over: each user's first (20), then 30 more, the last as the run stops.
    done, (planned, started, dropped), rows = run(tmp_path, "-u", "20", "-r", "20", "-t", "60s",
                                                  "--noop-rate", "100", "--noop-stop-at", "30")
    assert done.returncode == 0, log_of(done.stderr)
    assert started + dropped == planned and started == 49
    assert tally(done.stderr)[0] == 49 == rows[("NOOP", "noop")]["num_requests"]


def test_slow_users_produce_drops_and_fail_check_min_rate(tmp_path):
    # 2 users busy 100 ms per iteration serve at most 20/s of a 100/s plan: the rest is dropped.
    done, (planned, started, dropped), rows = run(tmp_path, "-u", "2", "-r", "2", "-t", "6s", "--noop-rate", "100",
                                                  "--noop-iterations", "200", "--noop-work", "0.1",
                                                  "--check-min-rate", "0.05")
    assert planned == 200 and started + dropped == 200 and dropped > 0
    assert rows[("DROPPED", "noop")]["num_requests"] == dropped
    assert "the generator is the limit" in done.stderr and "check failed: achieved" in done.stderr
    assert done.returncode == 8


def test_check_min_rate_passes_when_every_instant_found_a_user(tmp_path):
    done, (planned, started, dropped), _rows = run(tmp_path, "-u", "50", "-r", "50", "-t", "5s", "--noop-rate", "20",
                                                   "--noop-iterations", "40", "--check-min-rate", "0.01")
    assert (planned, started, dropped) == (40, 40, 0)
    assert done.returncode == 0, log_of(done.stderr)


@pytest.mark.parametrize("processes", [[], ["--processes", "2"]], ids=["one process", "two workers"])
def test_the_plan_waits_for_users_still_in_on_start(tmp_path, processes):
    # Every user spends 0.5 s in on_start (a device connecting): started at spawning, the plan would
    # drop its first 50 instants, as no user is free yet. Workers tell the master once theirs are ready.
    done, (planned, started, dropped), _rows = run(tmp_path, "-u", "20", "-r", "20", "-t", "8s", *processes,
                                                   "--noop-rate", "100", "--noop-iterations", "200",
                                                   "--noop-start", "0.5", "--check-min-rate", "0.01")
    assert (planned, started, dropped) == (200, 200, 0)
    assert done.returncode == 0, log_of(done.stderr)


def test_users_slower_than_the_ready_timeout_are_not_waited_for_and_it_is_said(tmp_path):
    done, (planned, started, dropped), _rows = run(tmp_path, "-u", "5", "-r", "5", "-t", "4s", "--noop-rate", "100",
                                                   "--noop-iterations", "200", "--noop-start", "1.5",
                                                   "--arrival-ready-timeout", "0.2")
    assert done.returncode == 0, log_of(done.stderr)
    assert "open model: 5 of 5 users were still in on_start after 0.2 s; the plan starts without them" in done.stderr
    assert planned == 200 and started + dropped == 200 and dropped > 0


def test_processes_share_the_plan_exactly(tmp_path):
    done, (planned, started, dropped), rows = run(tmp_path, "-u", "20", "-r", "20", "-t", "8s", "--processes", "2",
                                                  "--noop-rate", "200", "--noop-iterations", "301")
    assert done.returncode == 0, log_of(done.stderr)
    assert planned == 301 and started + dropped == 301
    assert "over 1.5 s" in done.stderr  # 301 instants at 200/s, interleaved over the two workers
    assert rows[("NOOP", "noop")]["num_requests"] == started


def test_a_bad_ready_timeout_is_a_one_line_error(tmp_path):
    done = run_locust(["-f", LOCUSTFILE, "--headless", "--no-monitor", "-t", "1s", "--arrival-ready-timeout", "0"],
                      timeout=60)
    assert done.returncode != 0 and "Traceback" not in done.stderr
    assert "argument --arrival-ready-timeout: '0': expected a number > 0" in done.stderr


def test_bad_stages_are_a_one_line_error(tmp_path):
    done = run_locust(["-f", LOCUSTFILE, "--headless", "--no-monitor", "-t", "1s", "--rate-stages", "100:fast"],
                      timeout=60)
    assert done.returncode != 0 and "Traceback" not in done.stderr
    assert "error: --rate-stages '100:fast': expected RATE:DURATION" in done.stderr
