"""The web UI: the Pipeline tab and page, phases marked by hand, a run folder per test started from
the UI, the suite's per-test options in its start form, the host checked when a test starts."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess

import pytest
import requests

from stack import free_port
from tests.helpers import REPO, start_locust, wait_for
from tests.results.conftest import LOCUSTFILE

HTTP_LOCUSTFILE = str(REPO / "locustfiles" / "http.py")
FOLDER_FILES = {"run.json", "stats.json", "report.html", "samples.jsonl", "request_stats.jsonl"}


class WebUI:
    def __init__(self, base: str, proc: subprocess.Popen, results) -> None:
        self.base, self.proc, self.results = base, proc, results

    def get(self, path: str):
        return requests.get(self.base + path, timeout=10)

    def post(self, path: str, **data):
        return requests.post(self.base + path, data=data, timeout=10)

    def start(self, users: int = 2, **options) -> dict:
        return self.post("/swarm", user_count=users, spawn_rate=users, **options).json()

    def start_when_ready(self, users: int = 2, **options) -> dict:
        """Start; while the previous test still writes its results the UI says so: start again then."""
        def started():
            answer = self.start(users, **options)
            return answer if answer["success"] or "still finishing" not in answer["message"] else None

        return wait_for(started, timeout=90, interval=0.5, what="a start accepted")

    def page_args(self) -> dict:
        text = self.get("/").text
        return json.loads(re.search(r"window\.templateArgs = (\{.*?\})\s*</script>", text, re.S).group(1))


def start_web_ui(tmp_path, locustfile: str, host: str, *args: str, via_run: bool = False) -> WebUI:
    """Locust's web UI on a free port, run folders in tmp_path/results (`via_run`: started as
    `python -m loadtesting.run KIND --web`)."""
    port = free_port()
    results = tmp_path / "results"
    start = [locustfile, "--web", "--results", str(results)] if via_run else ["-f", locustfile]
    proc = start_locust([*start, "-H", host, "--web-host", "127.0.0.1", "--web-port", str(port),
                         "--spill-dir", str(tmp_path / "spill"), *args], via=["loadtesting.run"] if via_run else None,
                        env={"LOCUST_RESULTS": str(results)},
                        stdout=subprocess.DEVNULL, stderr=open(tmp_path / "locust.log", "w"))
    ui = WebUI(f"http://127.0.0.1:{port}", proc, results)

    def up():
        assert proc.poll() is None, (tmp_path / "locust.log").read_text()[-2000:]
        try:
            return ui.get("/").status_code == 200
        except requests.ConnectionError:
            return False

    wait_for(up, timeout=60, what="Locust web UI")
    return ui


def stop_web_ui(ui: WebUI) -> None:
    if ui.proc.poll() is None:
        os.killpg(ui.proc.pid, signal.SIGTERM)
    ui.proc.wait(timeout=60)


@pytest.fixture
def web_ui(capped, clickhouse, tmp_path):
    ui = start_web_ui(tmp_path, LOCUSTFILE, capped, "--clickhouse-url", clickhouse.url, "--monitor-interval", "0.5",
                      "--drain-timeout", "5")
    yield ui
    stop_web_ui(ui)


def test_the_start_page_declares_the_pipeline_tab(web_ui):
    assert {"title": "Pipeline", "key": "pipeline"} in web_ui.page_args()["extended_tabs"]


def test_the_pipeline_tab_returns_the_latest_sample(web_ui):
    assert web_ui.start()["success"]

    def host_rows():
        rows = web_ui.get("/pipeline/latest").json()["rows"]
        return [r for r in rows if r["source"] == "host" and r["metric"] == "cpu_percent"]

    wait_for(host_rows, timeout=30, what="a host sample in /pipeline/latest")
    first = web_ui.get("/pipeline/latest").json()
    assert first["run_id"] and first["age_s"] < 5
    # The UI's stats poll carries the same rows as the tab's table data.
    tab = next(e for e in web_ui.get("/stats/requests").json()["extended_stats"] if e["key"] == "pipeline")
    assert any(r["source"] == "host" for r in tab["data"])
    # A later sample replaces it: the tab is live.
    wait_for(lambda: web_ui.get("/pipeline/latest").json()["time"] > first["time"], timeout=10, what="a newer sample")


def test_the_history_route_holds_a_point_per_sample(web_ui):
    assert web_ui.start()["success"]
    history = wait_for(lambda: (h := web_ui.get("/pipeline/history").json()) and len(h["times"]) >= 4 and h,
                       timeout=30, what="four samples in /pipeline/history")
    charts = {c["key"]: c for c in history["charts"]}
    assert charts["host"]["unit"] == "%" and charts["throughput"]["unit"] == "/s"
    for chart in charts.values():
        for series in chart["series"]:
            assert len(series["values"]) == len(history["times"]), (chart["key"], series["name"])
    offered = [v for v in next(s for s in charts["throughput"]["series"] if s["name"] == "offered")["values"] if v]
    assert offered and min(offered) > 0  # the busy users' requests per second, interval by interval
    assert web_ui.get("/pipeline").headers["Content-Type"].startswith("text/html")


def test_phases_are_marked_from_the_web_ui(web_ui):
    assert web_ui.post("/phases/start", name="peak").status_code == 200
    assert web_ui.post("/phases/end", name="peak").status_code == 200
    marked = web_ui.get("/phases").json()
    assert [(p["name"], p["end"] is not None) for p in marked] == [("peak", True)]
    bad = web_ui.post("/phases/start", name="two words")
    assert bad.status_code == 400 and "expected 1-64 letters" in bad.json()["error"]


def _offered(ui: WebUI, run_id: str) -> list[float]:
    """The requests per second of the samples so far of run `run_id` that had requests."""
    history = ui.get("/pipeline/history").json()
    if history["run_id"] != run_id:
        return []  # the test is starting: the UI still shows the previous one
    charts = {c["key"]: c for c in history["charts"]}
    series = {s["name"]: s["values"] for s in charts.get("throughput", {}).get("series", [])}
    return [v for v in series.get("offered", []) if v]


def _complete_folders(results) -> list:
    if not results.is_dir():
        return []
    done = []
    for folder in sorted(results.iterdir()):
        meta = json.loads((folder / "run.json").read_text()) if (folder / "run.json").exists() else {}
        if "results_written" in meta:
            done.append(folder)
    return done


@pytest.fixture
def web_ui_via_run(capped, clickhouse, tmp_path):
    ui = start_web_ui(tmp_path, LOCUSTFILE, capped, "--clickhouse-url", clickhouse.url, "--monitor-interval", "0.5",
                      "--drain-timeout", "5", via_run=True)
    yield ui
    stop_web_ui(ui)


def test_each_test_started_from_the_web_ui_gets_a_complete_run_folder(web_ui_via_run):
    """Start, stop, start again: two run folders, each with what a headless run writes."""
    web_ui = web_ui_via_run
    for n in (1, 2):
        started = web_ui.start_when_ready()
        assert started["success"] and started["results"] == str(web_ui.results / started["run_id"])
        wait_for(lambda run_id=started["run_id"]: _offered(web_ui, run_id), timeout=30, what=f"a sample with requests in test {n}")
        assert web_ui.post("/stop").json()["success"]
        wait_for(lambda n=n: len(_complete_folders(web_ui.results)) == n, timeout=90,
                 what=f"run folder {n} complete")
    first, second = _complete_folders(web_ui.results)
    for folder in (first, second):
        files = {p.name for p in folder.iterdir()}
        assert FOLDER_FILES <= files, files
        assert list(folder.glob("*-results.md")) and list(folder.glob("*-results.html"))  # the report, both forms
        if shutil.which("sadc") or os.path.exists("/usr/lib/sysstat/sadc"):
            assert "sar.data" in files
        meta = json.loads((folder / "run.json").read_text())
        assert meta["run_id"] == folder.name and meta["web_ui"] and meta["exit_code"] == 0
        stats = json.loads((folder / "stats.json").read_text())
        assert next(r for r in stats["requests"] if r["name"] == "/work")["requests"] > 0
        # The folder's samples are its own test's.
        run_ids = {json.loads(line)["run_id"] for line in (folder / "request_stats.jsonl").read_text().splitlines()}
        assert run_ids == {folder.name}
    assert web_ui.proc.poll() is None  # the web UI lives on for the next test


def test_per_test_options_are_in_the_start_form_and_take_effect(web_ui):
    extra = web_ui.page_args()["extra_options"]
    assert {"run_tags", "check_p95", "check_fail_ratio", "monitor_interval", "drain_timeout"} <= set(extra)
    assert not any(o["is_secret"] for o in extra.values())  # none of them holds a secret
    assert "clickhouse_url" not in extra  # where the rows go (and its password) is not a per-test choice
    bad = web_ui.start(check_p95="fast")
    assert not bad["success"] and bad["message"] == "error: --check-p95 'fast': expected a number"
    started = web_ui.start(check_p95="0.001", run_tags="from-the-ui")
    assert started["success"]
    wait_for(lambda: _offered(web_ui, started["run_id"]), timeout=30, what="a sample with requests")
    changed = web_ui.start(4, check_p95="fast")  # a new user count for the running test: checked too
    assert not changed["success"] and "expected a number" in changed["message"]
    web_ui.post("/stop")
    (folder,) = wait_for(lambda: _complete_folders(web_ui.results), timeout=90, what="the run folder")
    meta = json.loads((folder / "run.json").read_text())
    assert meta["exit_code"] == 4  # --check-p95's exit code
    assert meta["web_ui_form"]["check_p95"] == 0.001 and meta["web_ui_form"]["run_tags"] == "from-the-ui"


def test_a_host_that_is_down_is_an_error_when_the_test_starts(capped, tmp_path):
    closed = f"http://127.0.0.1:{free_port()}"
    ui = start_web_ui(tmp_path, HTTP_LOCUSTFILE, closed, "--no-monitor", "--no-sar")
    try:
        refused = ui.start(1)
        assert not refused["success"] and refused["message"] == f"error: --host {closed}: cannot connect (connection refused)"
        assert ui.proc.poll() is None and ui.get("/").status_code == 200
        assert ui.start(1, host=capped)["success"]  # the host corrected in the form
    finally:
        stop_web_ui(ui)


def test_a_test_running_when_the_web_ui_is_ended_by_a_signal_still_gets_its_folder(web_ui):
    started = web_ui.start()
    assert started["success"]
    wait_for(lambda: _offered(web_ui, started["run_id"]), timeout=30, what="a sample with requests")
    os.killpg(web_ui.proc.pid, signal.SIGTERM)
    assert web_ui.proc.wait(timeout=90) == 143  # stopped before its planned end, as a headless run says
    (folder,) = _complete_folders(web_ui.results)
    meta = json.loads((folder / "run.json").read_text())
    assert meta["exit_code"] == 143 and meta["interrupted"]
    assert FOLDER_FILES <= {p.name for p in folder.iterdir()}


def test_an_autostarted_test_gets_the_folder_of_its_run_id(capped, clickhouse, tmp_path):
    """--autostart starts the first test without the start form: its folder is named for the id the
    run started with, whichever test_start listener runs first (its samples go there)."""
    ui = start_web_ui(tmp_path, LOCUSTFILE, capped, "--clickhouse-url", clickhouse.url, "--monitor-interval", "0.5",
                      "--autostart", "--autoquit", "0", "--run-time", "2s", "-u", "1", "-r", "1", "--no-sar")
    try:
        ui.proc.wait(timeout=90)
        [folder] = list(ui.results.iterdir())
        rows = (folder / "request_stats.jsonl").read_text().splitlines()
        assert rows and {json.loads(line)["run_id"] for line in rows} == {folder.name}
        assert json.loads((folder / "run.json").read_text())["run_id"] == folder.name
    finally:
        stop_web_ui(ui)
