"""The rate capacity search started from Locust's web UI, as a person uses it: its progress in the UI's
log, a stop from the UI that ends it with a partial capacity.json in the test's run folder, and a
second start that searches afresh."""

from __future__ import annotations

import json

from tests.capacity.conftest import FAST, LOCUSTFILE
from tests.helpers import wait_for
from tests.results.test_webui import _complete_folders, start_web_ui, stop_web_ui


def _progress(ui, after: int = 0) -> list[str]:
    return [line for line in ui.get("/logs").json()["master"][after:] if "capacity search: 30 events/s →" in line]


def test_a_search_started_stopped_and_started_again_from_the_web_ui(standin, clickhouse, redis_server, tmp_path):
    prefix, db = standin("consumer", 1000)  # far above the rates tried
    ui = start_web_ui(tmp_path, LOCUSTFILE, "http://127.0.0.1", "--pipeline-backend", "redis_bus",
                      "--event-bus-prefix", prefix, "--event-bus-redis-url", redis_server.url,
                      "--clickhouse-url", clickhouse.url, "--xapi-database", db, "--capacity-search",
                      "--capacity-start-rate", "30", "--capacity-rate-step", "10", *FAST, "--capacity-step-time", "4",
                      "-u", "5")
    try:
        # The start form's rate field would silently lose to the search: refused, saying why.
        refused = ui.start(20, events_per_second="500")
        assert not refused["success"] and "--events-per-second 500" in refused["message"], refused
        assert "--capacity-search" in refused["message"]
        seen = 0
        for n in (1, 2):
            started = ui.start(20)  # the form's user count: the open model's pool for this search
            assert started["success"], started
            # The progress line of the first step, in the UI's log (its Logs tab).
            wait_for(lambda seen=seen: _progress(ui, seen), timeout=60, what=f"test {n}'s first step in the UI's log")
            seen = len(ui.get("/logs").json()["master"])
            # A new user count for the running search: Locust would say "Swarming started" and change
            # nothing; refused, saying why.
            edited = ui.start(40)
            assert not edited["success"] and "stop it, then start again" in edited["message"], edited
            assert ui.post("/stop").json()["success"]
            wait_for(lambda n=n: len(_complete_folders(ui.results)) == n, timeout=90, what=f"run folder {n}")
            folder = _complete_folders(ui.results)[-1]
            assert [line for line in ui.get("/logs").json()["master"][seen:]
                    if "capacity search: stopped before the search ended" in line]  # its end, in the UI's log
            assert folder.name == started["run_id"]
            cap = json.loads((folder / "capacity.json").read_text())
            assert "**The search was stopped before its end**" in next(folder.glob("*-results.md")).read_text()
            assert cap["stopped"] and cap["users"] == 20, cap
            # Each test searches from the start rate: the first step of each is 30/s, judged. Its verdict
            # is not asserted: a 4 s window on a busy machine may not show the backlog flat (a fail,
            # by the rule), which is the rule's business (tests/capacity/test_rate_rule.py), not the UI's.
            assert cap["steps"][0]["target"] == 30 and cap["steps"][0]["verdict"] in ("pass", "fail"), cap["steps"][0]
            passed = [s["target"] for s in cap["steps"] if s["verdict"] == "pass"]
            assert cap["sustained_events_per_second"] == max(passed, default=0.0), cap
        assert ui.proc.poll() is None
    finally:
        stop_web_ui(ui)
