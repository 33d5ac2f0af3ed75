"""The Pipeline page in a real browser (headless Chromium from Debian, driven by Selenium): a tracking
run started from Locust's start form, one chart point per monitor sample, a screenshot to look at."""

from __future__ import annotations

import json
import shutil

import pytest

from tests.helpers import wait_for
from tests.pipeline.conftest import LOCUSTFILE
from tests.results.test_webui import start_web_ui, stop_web_ui

CHROMEDRIVER = "/usr/bin/chromedriver"
SAMPLES = 6  # at least this many samples before the test is stopped
PAGE_STATE = """
const drawn = {};
for (const line of document.querySelectorAll("polyline[data-series]"))
  drawn[line.closest(".chart").dataset.chart + "|" + line.dataset.series] = Number(line.dataset.points);
return {data: window.pipelineData, drawn: drawn, rows: document.querySelectorAll("#latest tbody tr").length,
        units: Array.from(document.querySelectorAll(".chart h2 .unit"), e => e.textContent)};
"""


@pytest.fixture
def browser(tmp_path):
    if not shutil.which("chromedriver") and not shutil.which(CHROMEDRIVER):
        pytest.fail("chromedriver missing: `make test` installs Debian's chromium and chromium-driver")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    opts = webdriver.ChromeOptions()
    opts.binary_location = "/usr/bin/chromium"
    for arg in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                "--disable-background-networking", "--disable-component-update", "--disable-sync",
                "--disable-dev-shm-usage", f"--user-data-dir={tmp_path / 'chromium'}", "--window-size=1400,1500"):
        opts.add_argument(arg)
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=opts)
    yield driver
    driver.quit()


def test_the_pipeline_page_charts_every_sample_of_a_run_started_in_the_browser(
        browser, pipeline, clickhouse, redis_server, tmp_path):
    from selenium.webdriver.common.by import By

    p = pipeline("redis_bus")
    ui = start_web_ui(tmp_path, LOCUSTFILE, "http://127.0.0.1", "--monitor-interval", "1", "--drain-timeout", "30",
                      "--num-events", "100000", "--events-per-second", "40", "--no-sar",
                      *p.generator_args(clickhouse, redis_server, None))
    try:
        # Locust's own start form, as a person fills it.
        browser.get(ui.base + "/")
        users = wait_for(lambda: browser.find_elements(By.NAME, "userCount"), timeout=30, what="the start form")[0]
        users.clear()
        users.send_keys("5")
        rate = browser.find_element(By.NAME, "spawnRate")
        rate.clear()
        rate.send_keys("5")
        browser.find_element(By.CSS_SELECTOR, "form button[type=submit]").click()

        browser.get(ui.base + "/pipeline?refresh=0.5")
        wait_for(lambda: browser.execute_script("return window.pipelineData ? window.pipelineData.times.length : 0")
                 >= SAMPLES, timeout=60, what=f"{SAMPLES} samples on the page")
        assert ui.post("/stop").json()["success"]
        (folder,) = wait_for(lambda: [f for f in ui.results.iterdir() if "results_written" in json.loads(
            (f / "run.json").read_text())], timeout=120, interval=0.5, what="the run's results")
        taken = [json.loads(line) for line in (folder / "samples.jsonl").read_text().splitlines()]
        samples = len(taken)
        assert samples >= SAMPLES

        # The page after the drain: every sample the monitor took is a point of the charts. Read in
        # one script, from one rendering (the page redraws as it polls).
        def final():
            page = browser.execute_script(PAGE_STATE)
            return page if page["data"] and len(page["data"]["times"]) == samples else None

        page = wait_for(final, timeout=10, what=f"{samples} points on the page")
        drawn, charts = page["drawn"], {c["key"]: c for c in page["data"]["charts"]}
        for key, chart in charts.items():
            for series in chart["series"]:
                assert drawn[f"{key}|{series['name']}"] == sum(v is not None for v in series["values"]), series
        # One point per sample that has the figure, counted in the run folder's samples.jsonl.
        assert page["data"]["times"] == [s["time"] for s in taken]

        def having(source: str, figure: str) -> int:
            return sum(isinstance((s["stats"].get(source) or {}).get(figure), (int, float)) for s in taken)

        expected = {"backlog|redis_bus": having("redis_bus", "lag"), "backlog|sent − stored": having("e2e", "missing"),
                    "clickhouse_lag|clickhouse": having("clickhouse", "lag_seconds"),
                    "host|cpu": having("host", "cpu_percent")}
        assert {k: drawn[k] for k in expected} == expected
        assert expected["backlog|redis_bus"] == expected["host|cpu"] == samples  # these have every sample
        assert {"backlog", "clickhouse_lag", "e2e", "throughput", "host"} <= set(charts)
        e2e = [v for s in charts["e2e"]["series"] for v in s["values"] if v is not None]
        assert e2e and min(e2e) > 0  # per-interval end-to-end percentiles, event time → ClickHouse
        assert len(page["units"]) == len(charts) and "(events)" in page["units"] and "(ms)" in page["units"]
        assert page["rows"] > 0  # the latest figures stay below the charts
        browser.save_screenshot(str(tmp_path / "pipeline.png"))
        print(f"screenshot: {tmp_path / 'pipeline.png'}; {samples} samples; points per series: {drawn}")
    finally:
        stop_web_ui(ui)


def test_a_tracking_test_from_the_web_ui_ends_at_its_budget_and_the_ui_stays(pipeline, clickhouse, redis_server,
                                                                             tmp_path):
    """--num-events and --events-per-second set in the start form; the test stops when they are spent,
    its folder is complete, and the web UI is there for the next test (headless, the run would quit)."""
    p = pipeline("redis_bus")
    ui = start_web_ui(tmp_path, LOCUSTFILE, "http://127.0.0.1", "--monitor-interval", "1", "--drain-timeout", "30",
                      "--no-sar", *p.generator_args(clickhouse, redis_server, None))
    try:
        assert ui.start(5, num_events="150", events_per_second="100")["success"]
        (folder,) = wait_for(lambda: [f for f in ui.results.iterdir() if "results_written" in json.loads(
            (f / "run.json").read_text())], timeout=120, interval=0.5, what="the test's end by its budget")
        meta = json.loads((folder / "run.json").read_text())
        assert meta["exit_code"] == 0 and meta["web_ui_form"]["num_events"] == 150
        rows = json.loads((folder / "stats.json").read_text())["requests"]
        planned = sum(r["requests"] for r in rows if r["type"] not in ("", "E2E"))  # sent, or dropped (DROPPED)
        assert ui.proc.poll() is None and ui.get("/").status_code == 200
        assert ui.get("/stats/requests").json()["state"] == "stopped"
        assert planned == 150  # the budget set in the form, not the default --num-events
    finally:
        stop_web_ui(ui)
