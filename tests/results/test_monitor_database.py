"""The automatic report of `python -m loadtesting.run` reads the monitor database the run used,
wherever Locust took it from: a config file, a LOCUST_* variable or the command line."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys

import pytest

from plumbing import chclient
from tests.helpers import REPO, run_locust
from tests.results.conftest import LOCUSTFILE


def run_with_database(capped, clickhouse, tmp_path, how: str, database: str) -> tuple[str, subprocess.CompletedProcess]:
    results = tmp_path / "results"
    env = {"LOCUST_MONITOR_DATABASE": None}
    args = [LOCUSTFILE, "--results", str(results), "-H", capped,
            "-u", "2", "-r", "2", "-t", "2s", "--clickhouse-url", clickhouse.url, "--monitor-interval", "1",
            "--no-sar", "--spill-dir", str(tmp_path / "spill")]
    if how == "config file":
        conf = tmp_path / "run.conf"
        conf.write_text(f"monitor-database = {database}\n")
        args += ["--config", str(conf)]
    else:
        env["LOCUST_MONITOR_DATABASE"] = database
    done = run_locust(args, via=["loadtesting.run"], env=env, timeout=300)
    run_id = re.search(r"^run (\S+):", done.stdout, re.M).group(1)
    return run_id, done


@pytest.mark.parametrize("how", ["config file", "LOCUST_MONITOR_DATABASE"])
def test_the_automatic_report_reads_the_monitor_database_the_run_used(capped, clickhouse, tmp_path, how):
    database = "custom_" + re.sub(r"\W", "_", how).lower()
    run_id, done = run_with_database(capped, clickhouse, tmp_path, how, database)
    assert done.returncode == 0, done.stdout + done.stderr
    folder = tmp_path / "results" / run_id

    client = chclient.connect(clickhouse.url)
    stored = client.execute(f"SELECT count() FROM {database}.load_test_meta WHERE run_id = %(r)s", {"r": run_id})
    assert stored[0][0] >= 1  # the monitor wrote there, not to the default database
    md = (folder / "capped_locustfile-results.md").read_text()
    assert "| Data source | ClickHouse (monitor tables) |" in md
    final = {r["name"]: r for r in json.loads((folder / "stats.json").read_text())["requests"]}["/work"]["requests"]
    assert f"| GET | /work | {final:,} |" in md
    assert json.loads((folder / "run.json").read_text())["monitor"] == {"clickhouse_url": clickhouse.url,
                                                                        "database": database}


def test_a_report_made_later_reads_the_monitor_database_the_run_used(capped, clickhouse, tmp_path):
    run_id, done = run_with_database(capped, clickhouse, tmp_path, "config file", "custom_later")
    assert done.returncode == 0, done.stdout + done.stderr
    env = {k: v for k, v in os.environ.items() if k != "LOCUST_MONITOR_DATABASE"}
    later = subprocess.run([sys.executable, "-m", "loadtesting.report", run_id, "--results", str(tmp_path / "results"),
                            "--out", str(tmp_path / "later")], cwd=REPO, env=env, capture_output=True, text=True,
                           timeout=120)
    assert later.returncode == 0, later.stdout + later.stderr
    assert "(from clickhouse)" in later.stdout
    assert "| Data source | ClickHouse (monitor tables) |" in (tmp_path / "later" / "capped_locustfile-results.md").read_text()


def test_run_json_keeps_the_clickhouse_url_without_its_password(tmp_path):
    from loadtesting.run import monitor_target, record_monitor_target

    (tmp_path / "run.json").write_text(json.dumps({"run_id": "r"}))
    record_monitor_target(tmp_path, "clickhouse://lt:s3cret@db:9000/default", "custom")
    meta = json.loads((tmp_path / "run.json").read_text())
    assert meta["monitor"] == {"clickhouse_url": "clickhouse://lt@db:9000/default", "database": "custom"}
    assert "s3cret" not in (tmp_path / "run.json").read_text()
    # The same URL on the command line brings its password back for the report, in memory only.
    assert monitor_target(meta, ["--clickhouse-url", "clickhouse://lt:s3cret@db:9000/default"]) == (
        "clickhouse://lt:s3cret@db:9000/default", "custom")
