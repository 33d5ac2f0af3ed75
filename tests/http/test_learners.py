"""The HTTP learners (locustfiles/http.py) against the baseline LAMPI site, run as real Locust processes."""

from __future__ import annotations

import json
import os
import re
import signal
import sqlite3
import subprocess
from pathlib import Path

import requests

from plumbing.locust_csv import read_locust_failures, read_locust_stats
from stack import free_port
from tests.helpers import REPO, locust_until, log_of, run_locust, start_locust, wait_for

LOCUSTFILE = str(REPO / "locustfiles" / "http.py")
TASK_WEIGHTS = {"/": 100, "/lampi": 80, "/lampi/device/<device_id>": 75}


def headless(site, tmp_path: Path, *extra: str, users: int = 10, run_time: str = "8s", env=None) -> tuple:
    prefix = tmp_path / "run"
    args = ["-f", LOCUSTFILE, "--headless", "--host", site.url, "--users", str(users), "--spawn-rate", "50",
            "--run-time", run_time, "--csv", str(prefix), "--only-summary", *extra]
    done = run_locust(args, env=env, timeout=240)
    return done, prefix


def final_stats(results: Path) -> dict[str, dict]:
    """Locust's final figures by request name (stats.json)."""
    return {r["name"]: r for r in json.loads((results / "stats.json").read_text())["requests"]}


def chi_square(observed: dict[str, int], weights: dict[str, int]) -> float:
    total, wsum = sum(observed.values()), sum(weights.values())
    return sum((observed[k] - total * w / wsum) ** 2 / (total * w / wsum) for k, w in weights.items())


def test_task_weights_hold(site, tmp_path):
    done, prefix = headless(site, tmp_path, "--wait-min", "0", "--wait-max", "0", run_time="10s")
    assert done.returncode == 0, log_of(done.stderr)
    stats = read_locust_stats(prefix)
    observed = {name: int(stats[name]["Request Count"]) for name in TASK_WEIGHTS}
    # Enough for the test to have power (every expected count well above 5), not a speed: a loaded
    # machine serves a few hundred in 10 s where an idle one serves thousands.
    assert sum(observed.values()) >= 200, observed
    # df = 2: P(chi2 > 13.82) = 0.001, so a correct mix fails this one time in a thousand.
    assert chi_square(observed, TASK_WEIGHTS) < 13.82, observed


def test_zero_failures_at_moderate_load(site, tmp_path):
    done, prefix = headless(site, tmp_path, "--wait-min", "0.5", "--wait-max", "2", users=60, run_time="15s")
    assert done.returncode == 0, log_of(done.stderr)
    agg = read_locust_stats(prefix)["Aggregated"]
    assert int(agg["Request Count"]) > 300
    assert int(agg["Failure Count"]) == 0, read_locust_failures(prefix)
    assert int(read_locust_stats(prefix)["/login/ (POST)"]["Request Count"]) == 60


def access_log_lines(path: Path, offset: int) -> list[tuple[str, int]]:
    """(request line, status) of each nginx access log line written after `offset` bytes."""
    if not path.exists():
        return []
    with open(path, "rb") as f:
        f.seek(offset)
        text = f.read().decode()
    found = (re.search(r'"([^"]*)" (\d{3}) ', line) for line in text.splitlines())
    return [(m.group(1), int(m.group(2))) for m in found if m]


def test_lampi_follows_the_sites_301_and_the_access_log_shows_it(site, tmp_path):
    log = Path(site.extra["access_log"])
    offset = log.stat().st_size if log.exists() else 0
    users = 5
    # --stop-timeout: a learner finishes the request in flight at the end, so none is cut off (nginx's 499).
    done, prefix = headless(site, tmp_path, "--wait-min", "0", "--wait-max", "0.1", "--no-sar", "--no-monitor",
                            "--stop-timeout", "10", users=users, run_time="5s",
                            env={"LOCUST_RESULTS_DIR": str(tmp_path)})
    assert done.returncode == 0, log_of(done.stderr)
    stats = final_stats(tmp_path)
    assert int(stats["Aggregated"]["failures"]) == 0, read_locust_failures(prefix)
    lampi = int(stats["/lampi"]["requests"])
    assert lampi > 0

    def lampi_lines() -> tuple[list[int], list[int]] | None:
        lines = access_log_lines(log, offset)
        bare = [status for req, status in lines if req.startswith("GET /lampi ")]
        slash = [status for req, status in lines if req.startswith("GET /lampi/ ")]
        return (bare, slash) if len(bare) >= lampi and len(slash) >= lampi else None

    bare, slash = wait_for(lampi_lines, timeout=30, what="/lampi in the access log")  # nginx flushes every 1 s
    assert set(bare) == {301} and set(slash) == {200}
    assert len(bare) == lampi and len(slash) == lampi  # one 301 and one 200 per /lampi Locust counted


def run_on_fake_site(site, tmp_path: Path) -> tuple:
    """One learner, no think time, 3 s; Locust's final figures: (exit code, requests by name, failures)."""
    done, _ = headless(site, tmp_path, "--wait-min", "0", "--wait-max", "0.05", "--no-sar", "--no-monitor",
                       users=1, run_time="3s", env={"LOCUST_RESULTS_DIR": str(tmp_path)})
    assert "Traceback" not in done.stderr, log_of(done.stderr)
    failures = json.loads((tmp_path / "stats.json").read_text())["failures"]
    return done.returncode, final_stats(tmp_path), failures


def test_redirect_to_the_login_form_is_a_lost_session_and_logs_in_again(fake_site, tmp_path):
    site = fake_site({"/lampi/": (302, "/login/?next=/lampi/")})
    code, stats, failures = run_on_fake_site(site, tmp_path)
    assert code == 1  # Locust exits 1 when any request failed
    assert {f["name"] for f in failures} == {"/lampi"} and all("session lost" in f["error"] for f in failures)
    lost = sum(f["occurrences"] for f in failures)
    assert stats["/lampi"]["requests"] == stats["/lampi"]["failures"] == lost >= 1
    assert stats["/"]["failures"] == 0 and stats["/"]["requests"] > 0
    # One login to start, then one after each lost session (the last may have had no next task).
    posts = site.count("POST", "/login/")
    assert posts >= 2 and lost <= posts <= lost + 1
    assert posts - 1 <= stats["/login/ (POST)"]["requests"] <= posts  # one may be cut off by the stop


def test_server_error_fails_the_request_and_keeps_the_session(fake_site, tmp_path):
    site = fake_site({"/lampi/device/*": (500, None)})
    code, stats, failures = run_on_fake_site(site, tmp_path)
    assert code == 1
    assert {f["name"] for f in failures} == {"/lampi/device/<device_id>"}
    assert all("500" in f["error"] and "session lost" not in f["error"] for f in failures)
    device = stats["/lampi/device/<device_id>"]
    assert device["failures"] == device["requests"] >= 1
    # The fake site's /lampi is a 301 to /lampi/ too: followed, a success.
    assert stats["/lampi"]["failures"] == 0 and stats["/lampi"]["requests"] >= 1 and site.count("GET", "/lampi/") >= 1
    assert site.count("POST", "/login/") == 1


def test_device_requests_are_grouped_under_one_name(site, tmp_path):
    done, prefix = headless(site, tmp_path, "--wait-min", "0", "--wait-max", "0.1", run_time="5s")
    assert done.returncode == 0, log_of(done.stderr)
    names = set(read_locust_stats(prefix))
    assert "/lampi/device/<device_id>" in names
    assert not [n for n in names if n.startswith("/lampi/device/1e")]


def test_lost_session_counts_as_failure_and_logs_in_again(site, tmp_path):
    # Paced by Locust's own counts (its CSV, rewritten every second), never by a run time: the sessions
    # go once every learner's login has been answered (its session saved), the run ends once all have
    # logged in again, however slow the site is on this machine.
    users = 5
    db = Path(site.extra["data_dir"]) / "db.sqlite3"
    prefix = tmp_path / "run"
    args = ["-f", LOCUSTFILE, "--headless", "--host", site.url, "--users", str(users), "--spawn-rate", "50",
            "--run-time", "600s", "--csv", str(prefix), "--wait-min", "0.05", "--wait-max", "0.1", "--no-sar", "--no-monitor"]

    def logins() -> int:
        try:
            return int(read_locust_stats(prefix)["/login/ (POST)"]["Request Count"])
        except (OSError, ValueError, KeyError):
            return 0

    with locust_until(args, env={"LOCUST_RESULTS_DIR": str(tmp_path)}) as run:
        wait_for(lambda: logins() >= users, timeout=120, interval=0.5, what="every learner logged in")
        with sqlite3.connect(db, timeout=20) as conn:
            conn.execute("DELETE FROM django_session")
        wait_for(lambda: logins() >= 2 * users, timeout=120, interval=0.5, what="every learner logged in again")
        code, err = run.end()
    assert code == 143, log_of(err)
    failures = json.loads((tmp_path / "stats.json").read_text())["failures"]
    assert sum(f["occurrences"] for f in failures if "session lost" in f["error"]) >= users, log_of(err)
    assert final_stats(tmp_path)["/login/ (POST)"]["requests"] >= 2 * users


def test_bad_option_is_a_one_line_error(site, tmp_path):
    done, _ = headless(site, tmp_path, "--fake-users", "0")
    assert done.returncode != 0
    errors = [line for line in done.stderr.splitlines() if "error:" in line]
    assert errors == ["locust: error: argument --fake-users: '0': expected an integer >= 1"], log_of(done.stderr)
    assert "Traceback" not in done.stderr


def test_options_come_from_locust_conf_and_env(site, tmp_path):
    conf = tmp_path / "http.conf"
    conf.write_text("wait-min = 3\nwait-max = 1\n")
    done, _ = headless(site, tmp_path, "--config", str(conf))
    assert "error: --wait-min 3.0 / --wait-max 1.0" in done.stderr
    done = run_locust(["-f", LOCUSTFILE, "--headless", "--host", site.url, "-t", "1s"],
                      env={"LOCUST_FIRST_FAKE_USER": "999999"})
    assert "error: --first-fake-user 999999: expected 0 … 990000" in done.stderr


def test_web_ui_serves_the_start_page(site, tmp_path):
    port = free_port()
    proc = start_locust(["-f", LOCUSTFILE, "--host", site.url, "--web-host", "127.0.0.1", "--web-port", str(port)],
                        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        def page():
            try:
                return requests.get(f"http://127.0.0.1:{port}/", timeout=2)
            except requests.ConnectionError:
                return None

        resp = wait_for(page, timeout=60, what="Locust web UI")
        assert resp.status_code == 200 and "locust" in resp.text.lower()
        assert "Learner" in requests.get(f"http://127.0.0.1:{port}/", timeout=2).text
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=30)


def test_distributed_run_with_two_processes_completes(site, tmp_path):
    port = str(free_port())  # not Locust's default 5557: other runs on the machine may hold it
    done, prefix = headless(site, tmp_path, "--processes", "2", "--master-bind-port", port, "--master-port", port,
                            "--wait-min", "0.1", "--wait-max", "0.5", users=20, run_time="8s")
    assert done.returncode == 0, log_of(done.stderr)
    stats = read_locust_stats(prefix)
    assert int(stats["/login/ (POST)"]["Request Count"]) == 20  # each user logged in once, counted once
    assert int(stats["Aggregated"]["Failure Count"]) == 0
    assert "2 workers connected" in done.stderr


def test_master_and_worker_run_completes(site, tmp_path):
    port, prefix = free_port(), tmp_path / "run"
    worker = start_locust(["-f", LOCUSTFILE, "--worker", "--master-host", "127.0.0.1", "--master-port", str(port)],
                          stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        done = run_locust(["-f", LOCUSTFILE, "--master", "--master-bind-host", "127.0.0.1",
                           "--master-bind-port", str(port), "--expect-workers", "1", "--headless",
                           "--host", site.url, "-u", "5", "-r", "5", "-t", "5s", "--csv", str(prefix),
                           "--wait-min", "0.1", "--wait-max", "0.3"], timeout=120)
        assert done.returncode == 0, log_of(done.stderr)
        assert int(read_locust_stats(prefix)["/login/ (POST)"]["Request Count"]) == 5
        assert worker.wait(timeout=30) == 0  # the master's quit message ends the worker cleanly
    finally:
        if worker.poll() is None:
            os.killpg(worker.pid, signal.SIGKILL)


def test_arrival_rate_starts_one_task_per_planned_instant(site, tmp_path):
    # --stop-timeout: a task under way at the stop ends with its request (else it is started, never counted).
    done, prefix = headless(site, tmp_path, "--arrival-rate", "20", "--stop-timeout", "10", users=10, run_time="5s")
    assert done.returncode == 0, log_of(done.stderr)
    m = re.search(r"open model: planned (\d+), started (\d+), dropped (\d+)", done.stderr)
    assert m, log_of(done.stderr)
    planned, started, dropped = map(int, m.groups())
    assert planned > 0 and started + dropped == planned
    stats = read_locust_stats(prefix)
    # Logins happen once per learner in on_start; every other request is one planned task.
    assert sum(int(stats[name]["Request Count"]) for name in TASK_WEIGHTS if name in stats) == started
