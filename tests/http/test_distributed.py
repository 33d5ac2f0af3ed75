"""A distributed run (one master, two worker processes) with the monitor on: nothing is lost.

Each request the site's nginx served is in Locust's final stats (stats.json), and the monitor's
per-interval rows add up to those stats, per request name and in total. Workers send the
requests of their last seconds only when they stop, after the master's stop.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from plumbing import chclient
from stack import free_port
from tests.helpers import REPO, start_locust, wait_for

LOCUSTFILE = str(REPO / "locustfiles" / "http.py")

STOP_TIMEOUT = 5  # users finish the request in flight, so nginx serves nothing Locust does not count
# How the master ends the test: at --run-time it quits at once (the workers' last reports race the
# master's end); with the web UI's stop (--autostart/--autoquit) workers stop first, then it quits.
ENDINGS = {
    "run-time quit": ["--headless"],
    # A stopped worker is ready again only after --stop-timeout; a master that quits before then
    # sends it no quit, and it lingers until its 60 s heartbeat timeout (Locust's own behaviour).
    "stop, then quit": ["--autostart", "--autoquit", str(STOP_TIMEOUT + 3), "--web-host", "127.0.0.1"],
}


def access_log(site) -> Path:
    return Path(site.extra["data_dir"]) / "nginx" / "access.log"


def log_lines(path: Path, offset: int) -> list[str]:
    """The access log's lines after `offset` bytes sent by Locust's HTTP client: nginx buffers its log,
    so a line of the stack's readiness check (urllib) can still land after the offset was taken."""
    if not path.exists():
        return []
    return [line for line in path.read_bytes()[offset:].decode().splitlines() if "gevent-http-client" in line]


def run_distributed(site, clickhouse, out: Path, run_id: str, ending: list[str]) -> list[tuple[int, str]]:
    """Master + two workers to completion; returns (exit code, output) of each process."""
    port = free_port()
    env = {"LOCUST_RESULTS_DIR": str(out), "LOCUST_RUN_ID": run_id}
    common = ["-f", LOCUSTFILE, "--stop-timeout", str(STOP_TIMEOUT)]
    master = [*common, *ending, "--master", "--expect-workers", "2", "--master-bind-host", "127.0.0.1",
              "--master-bind-port", str(port), "--web-port", str(free_port()), "--host", site.url,
              "--users", "30", "--spawn-rate", "30", "--run-time", "12s", "--wait-min", "0", "--wait-max", "0.5",
              "--clickhouse-url", clickhouse.url, "--monitor-interval", "2", "--no-sar", "--only-summary"]
    worker = [*common, "--worker", "--master-host", "127.0.0.1", "--master-port", str(port)]
    procs = [start_locust(cmd, env=env, start_new_session=False) for cmd in (master, worker, worker)]
    try:
        return [(p.wait(timeout=120), p.stdout.read()) for p in procs]
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()


@pytest.mark.parametrize("ending", ENDINGS.values(), ids=ENDINGS.keys())
def test_interval_rows_add_up_to_final_stats_and_access_log(site, clickhouse, tmp_path, ending):
    run_id = f"t-distributed-{ending[0].strip('-')}"
    log, offset = access_log(site), access_log(site).stat().st_size if access_log(site).exists() else 0
    results = run_distributed(site, clickhouse, tmp_path, run_id, ending)
    for code, output in results:
        assert code == 0, output[-3000:]
        assert "Traceback" not in output, output[-3000:]

    final = {r["name"]: r["requests"] for r in json.loads((tmp_path / "stats.json").read_text())["requests"]}
    client = chclient.connect(clickhouse.url)
    try:
        intervals = dict(client.execute(
            "SELECT name, sum(requests) FROM event_sink.load_test_request_stats WHERE run_id = %(r)s GROUP BY name",
            {"r": run_id}))
    finally:
        client.disconnect()
    assert final["/login/ (POST)"] == 30  # every learner of both workers logged in
    assert intervals == final

    # Each /lampi request is two answers of the site (APPEND_SLASH's 301, then /lampi/): the access
    # log holds one line per Locust request plus one per /lampi. nginx writes its buffer within 1 s.
    expected = final["Aggregated"] + final["/lampi"]
    served = wait_for(lambda: len(log_lines(log, offset)) >= expected and log_lines(log, offset),
                      timeout=15, what="nginx's access log to hold every request")
    hops = [line for line in served if '"GET /lampi HTTP/1.1" 301 ' in line]
    assert len(hops) == final["/lampi"]
    assert len(served) == expected, [line for line in served if " 200 " not in line and line not in hops][:20]
