"""Locust's --csv files hold the run's final figures, the requests of its last second included."""

from __future__ import annotations

import json
from pathlib import Path

from plumbing.locust_csv import read_locust_stats
from tests.helpers import log_of, run_locust

LOCUSTFILE = str(Path(__file__).with_name("closing_locustfile.py"))


def test_requests_recorded_while_users_stop_are_in_the_csv(tmp_path):
    done = run_locust(["-f", LOCUSTFILE, "--headless", "-u", "5", "-r", "5", "-t", "2s", "--no-monitor",
                       "--csv", str(tmp_path / "run"), "--json-file", str(tmp_path / "stats")], timeout=120)
    assert done.returncode == 0, log_of(done.stderr)
    final = {r["name"]: r["num_requests"] for r in json.loads((tmp_path / "stats.json").read_text())}
    rows = read_locust_stats(tmp_path / "run")
    assert int(rows["while stopping"]["Request Count"]) == final["while stopping"] == 5
    assert int(rows["work"]["Request Count"]) == final["work"] > 0
    assert int(rows["Aggregated"]["Request Count"]) == final["work"] + 5
