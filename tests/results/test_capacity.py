"""The capacity search: its decisions, and a real search against an endpoint with a known limit."""

from __future__ import annotations

import json

from loadtesting import phases
from loadtesting.capacity import Step, decide
from plumbing import chclient
from tests.helpers import run_locust
from tests.results.conftest import CAP, LOCUSTFILE, RESOLUTION


def steps(*results: tuple[int, bool]) -> list[Step]:
    return [Step(u, 0, 1, 10, 0 if ok else 5, 10.0, 0.0 if ok else 0.5, 10.0, ok) for u, ok in results]


def test_climbs_by_the_step_while_every_step_passes():
    assert decide(steps((10, True), (110, True)), 100, 10, 100_000) == 210


def test_never_climbs_past_the_user_ceiling():
    assert decide(steps((10, True), (90, True)), 100, 10, 100) == 100
    assert decide(steps((10, True), (100, True)), 100, 10, 100) is None


def test_after_a_failure_bisects_between_the_best_pass_and_the_lowest_failure():
    assert decide(steps((10, True), (110, True), (210, False)), 100, 10, 100_000) == 160
    assert decide(steps((10, True), (110, True), (210, False), (160, False)), 100, 10, 100_000) == 135


def test_stops_when_pass_and_failure_are_within_the_resolution():
    assert decide(steps((10, True), (110, True), (120, False)), 100, 10, 100_000) is None


def test_backs_off_below_a_failing_first_step():
    assert decide(steps((10, False)), 100, 1, 100_000) == 5
    assert decide(steps((1, False)), 100, 1, 100_000) is None  # even one user fails


def test_finds_the_concurrency_cap_within_one_step(capacity_run):
    assert capacity_run.returncode == 0, capacity_run.output[-3000:]
    cap = capacity_run.json("capacity.json")
    assert CAP - RESOLUTION <= cap["max_sustainable_users"] <= CAP, cap
    assert CAP < cap["first_failing_users"] <= cap["max_sustainable_users"] + RESOLUTION, cap
    assert f"maximum sustainable load: {cap['max_sustainable_users']} users" in capacity_run.output


def test_every_step_above_the_cap_failed_and_every_step_at_or_below_passed(capacity_run):
    for step in capacity_run.json("capacity.json")["steps"]:
        assert step["ok"] == (step["users"] <= CAP), step
        assert step["requests"] > 0 and step["end"] - step["start"] >= 3


def test_the_three_phases_are_the_windows_of_their_steps(capacity_run):
    cap = capacity_run.json("capacity.json")
    by_users = {s["users"]: s for s in cap["steps"]}
    marked = {p.name: p for p in phases.read(capacity_run.folder)}
    expected = {phases.MINIMAL: cap["steps"][0], phases.MAX_SUSTAINABLE: by_users[cap["max_sustainable_users"]],
                phases.FAILURE: by_users[cap["first_failing_users"]]}
    assert set(marked) == set(expected)
    for name, step in expected.items():
        assert (marked[name].start, marked[name].end) == (step["start"], step["end"]), name
        assert marked[name].figures["users"] == step["users"]


def test_capacity_and_phases_are_stored_with_the_run_in_clickhouse(capacity_run, clickhouse):
    client = chclient.connect(clickhouse.url)
    rows = client.execute("SELECT event_type, extra FROM event_sink.load_test_runs WHERE run_id = %(r)s",
                          {"r": capacity_run.run_id})
    kinds = [t for t, _ in rows]
    assert kinds.count("phase") == 3 and kinds.count("capacity") == 1 and "start" in kinds and "end" in kinds
    stored = json.loads(next(e for t, e in rows if t == "capacity"))
    assert stored["max_sustainable_users"] == capacity_run.json("capacity.json")["max_sustainable_users"]
    end = json.loads(next(e for t, e in rows if t == "end"))
    assert end["capacity"]["max_sustainable_users"] == stored["max_sustainable_users"]


def test_a_bad_capacity_option_is_a_one_line_error(capped):
    done = run_locust(["-f", LOCUSTFILE, "--headless", "-H", capped, "--no-monitor",
                       "--capacity-search", "--capacity-step", "0"], timeout=60)
    assert done.returncode != 0
    assert "argument --capacity-step: '0': expected an integer >= 1" in done.stderr
    assert "Traceback" not in done.stderr


def test_a_search_stopped_from_the_web_ui_writes_its_partial_result_and_the_next_starts_afresh(capped, clickhouse,
                                                                                             tmp_path):
    from tests.helpers import wait_for
    from tests.results.test_webui import _complete_folders, start_web_ui, stop_web_ui

    ui = start_web_ui(tmp_path, LOCUSTFILE, capped, "--clickhouse-url", clickhouse.url, "--capacity-search",
                      "--capacity-start-users", "4", "--capacity-step", "8", "--capacity-step-time", "2",
                      "--capacity-settle-time", "1", "--spawn-rate", "50", "--monitor-interval", "1",
                      "--drain-timeout", "5", "--no-sar")
    try:
        seen = 0
        for n in (1, 2):
            assert ui.start_when_ready(10)["success"]
            # Its progress in the UI's log (the Logs tab): the first step measured.
            wait_for(lambda seen=seen: any("capacity search: 4 users →" in line
                                           for line in ui.get("/logs").json()["master"][seen:]),
                     timeout=60, what=f"test {n}'s first step in the UI's log")
            seen = len(ui.get("/logs").json()["master"])
            assert ui.post("/stop").json()["success"]
            wait_for(lambda n=n: len(_complete_folders(ui.results)) == n, timeout=90, what=f"run folder {n}")
            folder = _complete_folders(ui.results)[-1]
            cap = json.loads((folder / "capacity.json").read_text())
            assert cap["stopped"] and not cap["reached_max_users"], cap
            report = next(folder.glob("*-results.md")).read_text()
            assert "The search was stopped before its end" in report and "No step failed" not in report
            assert cap["steps"][0]["users"] == 4, cap["steps"]  # each test searches from the start
    finally:
        stop_web_ui(ui)
