"""The run's end is owned by lifecycle.end: its phases come in one order and the run's outcome is
the same whatever order the suite's plugins were imported and the phases' listeners registered in."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from plumbing import chclient
from tests.helpers import run_locust

LOCUSTFILE = str(Path(__file__).with_name("order_locustfile.py"))
PHASES = ["run_started", "load_finished", "pipeline_draining", "pipeline_drained", "run_measured", "run_ending"]


def end_of_run(clickhouse, tmp_path: Path, order: str) -> tuple[int, list[str], dict, dict, dict, dict]:
    run_id = f"t-order-{order}"
    out = tmp_path / order
    out.mkdir()
    done = run_locust(["-f", LOCUSTFILE, "--headless", "-u", "2", "-r", "2", "-t", "3s", "--clickhouse-url",
                       clickhouse.url, "--monitor-interval", "0.5", "--spill-dir", str(tmp_path),
                       "--check-p95", "0", "--run-id", run_id, "--no-sar"],
                      env={"LIFECYCLE_ORDER": order, "LOCUST_RESULTS_DIR": str(out)}, timeout=120)
    phases = re.findall(r"phase (\w+)", done.stderr)
    handed = re.search(r"handed end_row (.*)", done.stderr)
    final = {r["name"]: r["requests"] for r in json.loads((out / "stats.json").read_text())["requests"]}
    client = chclient.connect(clickhouse.url)
    try:
        (end_row,), = client.execute("SELECT extra FROM event_sink.load_test_runs WHERE run_id = %(r)s AND "
                                     "event_type = 'end'", {"r": run_id})
        (start_row,), = client.execute("SELECT extra FROM event_sink.load_test_runs WHERE run_id = %(r)s AND "
                                       "event_type = 'start'", {"r": run_id})
    finally:
        client.disconnect()
    return (done.returncode, phases, final, json.loads(end_row), json.loads(start_row),
            json.loads(handed.group(1)) if handed else {})


@pytest.mark.parametrize("order", ["forward", "reverse"])
def test_the_phases_come_in_one_order_whatever_the_registration_order(clickhouse, tmp_path, order):
    code, phases, final, end_row, start_row, handed = end_of_run(clickhouse, tmp_path, order)
    assert phases == PHASES
    # The run (lifecycle.run) started it with the given id; the monitor stored what it was handed.
    assert start_row["locustfile"] == LOCUSTFILE and start_row["users"] == 2 and start_row["backends"] == []
    # A check judged after every measurement: its code is the process's and the end row's.
    assert code == 4 and end_row["exit_code"] == 4
    # Every figure was in before the end row and stats.json: the final count, the open model's summary.
    assert final["work"] > 0 and end_row["open_model"]["started"] == final["work"]
    assert end_row["drained"] is True
    # lifecycle owns the end row: the monitor stored the fields it was handed, with its own sample errors.
    assert end_row == {**handed, "sample_errors": 0}
