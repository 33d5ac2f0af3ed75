"""The web UI: a live Pipeline tab with the monitor's latest sample, and phases marked by hand."""

from __future__ import annotations

import os
import signal
import subprocess

import pytest
import requests

from stack import free_port
from tests.helpers import LOCUST, REPO, wait_for, start_locust
from tests.results.conftest import LOCUSTFILE


@pytest.fixture
def web_ui(capped, clickhouse, tmp_path):
    port = free_port()
    proc = start_locust(["-f", LOCUSTFILE, "-H", capped, "--web-host", "127.0.0.1", "--web-port", str(port),
                         "--clickhouse-url", clickhouse.url, "--monitor-interval", "0.5", "--spill-dir", str(tmp_path)],
                        env={"LOCUST_RESULTS_DIR": str(tmp_path)}, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    base = f"http://127.0.0.1:{port}"

    def up():
        try:
            return requests.get(base + "/", timeout=2).status_code == 200
        except requests.ConnectionError:
            return False

    wait_for(up, timeout=60, what="Locust web UI")
    yield base
    os.killpg(proc.pid, signal.SIGTERM)
    proc.wait(timeout=30)


def test_the_start_page_declares_the_pipeline_tab(web_ui):
    page = requests.get(web_ui + "/", timeout=5).text
    assert '"extendedTabs"' in page or "extended_tabs" in page or "Pipeline" in page


def test_the_pipeline_tab_returns_the_latest_sample(web_ui):
    requests.post(web_ui + "/swarm", data={"user_count": 2, "spawn_rate": 2}, timeout=5).raise_for_status()

    def host_rows():
        rows = requests.get(web_ui + "/pipeline/latest", timeout=5).json()["rows"]
        return [r for r in rows if r["source"] == "host" and r["metric"] == "cpu_percent"]

    wait_for(host_rows, timeout=30, what="a host sample in /pipeline/latest")
    first = requests.get(web_ui + "/pipeline/latest", timeout=5).json()
    assert first["run_id"] and first["age_s"] < 5
    # The UI's stats poll carries the same rows as the tab's table data.
    stats = requests.get(web_ui + "/stats/requests", timeout=5).json()
    tab = next(e for e in stats["extended_stats"] if e["key"] == "pipeline")
    assert any(r["source"] == "host" for r in tab["data"])
    # A later sample replaces it: the tab is live.
    wait_for(lambda: requests.get(web_ui + "/pipeline/latest", timeout=5).json()["time"] > first["time"],
             timeout=10, what="a newer sample")


def test_phases_are_marked_from_the_web_ui(web_ui):
    assert requests.post(web_ui + "/phases/start", data={"name": "peak"}, timeout=5).status_code == 200
    assert requests.post(web_ui + "/phases/end", data={"name": "peak"}, timeout=5).status_code == 200
    marked = requests.get(web_ui + "/phases", timeout=5).json()
    assert [(p["name"], p["end"] is not None) for p in marked] == [("peak", True)]
    bad = requests.post(web_ui + "/phases/start", data={"name": "two words"}, timeout=5)
    assert bad.status_code == 400 and "expected 1-64 letters" in bad.json()["error"]
