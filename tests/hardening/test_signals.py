"""A run stopped by a signal before its planned end says so: exit code, run.json and the end row."""

from __future__ import annotations

import json
import signal

import pytest

from plumbing import chclient
from tests.helpers import start_locust, wait_for
from tests.monitor.conftest import LOCUSTFILE
from tests.monitor.test_lifecycle import Output


@pytest.fixture(scope="module")
def ch(clickhouse):
    client = chclient.connect(clickhouse.url)
    yield client
    client.disconnect()


def start_run(clickhouse, tmp_path, run_time: str) -> Output:
    args = [LOCUSTFILE, "--results", str(tmp_path), "--no-report",
            "--users", "2", "--spawn-rate", "10", "--run-time", run_time, "--monitor-interval", "0.5",
            "--clickhouse-url", clickhouse.url, "--spill-dir", str(tmp_path / "spill")]
    return Output(start_locust(args, via=["loadtesting.run"], start_new_session=False))


def run_json(tmp_path) -> dict:
    (folder,) = [p for p in tmp_path.iterdir() if (p / "run.json").exists()]
    return json.loads((folder / "run.json").read_text())


def end_row(ch, run_id: str) -> dict:
    rows = ch.execute("SELECT extra FROM event_sink.load_test_runs WHERE run_id = %(r)s AND event_type = 'end'",
                      {"r": run_id})
    assert len(rows) == 1, rows
    return json.loads(rows[0][0])


def test_sigterm_before_the_planned_end_is_an_interrupted_run(clickhouse, ch, tmp_path):
    out = start_run(clickhouse, tmp_path, "120s")
    wait_for(lambda: out.count(r"monitor \S+: ") >= 2 or out.proc.poll() is not None, timeout=60,
             what="the run to be sampling")
    out.proc.send_signal(signal.SIGTERM)
    assert out.wait() == 143, out.text[-3000:]
    meta = run_json(tmp_path)
    assert (meta["exit_code"], meta["interrupted"]) == (143, True)
    end = end_row(ch, meta["run_id"])
    assert (end["exit_code"], end["interrupted"]) == (143, True)
    assert out.has(r"run stopped by SIGTERM before its planned end; exit code 143")
    assert out.has(r"results of run \S+ \(exit code 143, interrupted\)")


def test_a_run_that_reaches_its_planned_end_is_not_interrupted(clickhouse, ch, tmp_path):
    out = start_run(clickhouse, tmp_path, "2s")
    assert out.wait() == 0, out.text[-3000:]
    meta = run_json(tmp_path)
    assert (meta["exit_code"], meta["interrupted"]) == (0, False)
    end = end_row(ch, meta["run_id"])
    assert (end["exit_code"], end["interrupted"]) == (0, False)


def test_sigterm_is_the_planned_end_of_a_run_until_killed(redis_server, tmp_path):
    cmd = ["-f", "locustfiles/tracking.py", "--headless", "--users", "2", "--spawn-rate", "2",
           "--pipeline-backend", "redis_bus", "--event-bus-redis-url", redis_server.url, "--run-until-killed",
           "--events-per-second", "20", "--no-e2e", "--no-monitor", "--no-sar"]
    out = Output(start_locust(cmd, start_new_session=False))
    wait_for(lambda: out.has("All users spawned") or out.proc.poll() is not None, timeout=60, what="the users")
    out.proc.send_signal(signal.SIGTERM)
    assert out.wait() == 0, out.text[-3000:]
    assert not out.has("before its planned end")
