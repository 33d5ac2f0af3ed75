"""Running Locust across the test hosts: the master on host `master`, a worker on each of `w1` and `w2`.

Workers get nothing but the locustfile and the master's address (as on a fresh machine): whatever they
need comes from the master, and a default pointing at 127.0.0.1 finds nothing on their host.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

from plumbing import chclient
from tests.helpers import REPO, locust_env, start_locust

MASTER_PORT = 5557
WORKERS = ("w1", "w2")


def unset_settings(**more: str) -> dict[str, str | None]:
    """The suite's settings of this process unset (none may reach a host unasked), and `more` set."""
    return {**{k: None for k in os.environ if k.startswith(("LOCUST_", "KAFKA_", "CLICKHOUSE_", "STACK_"))}, **more}


def clean_env(**more: str) -> dict[str, str]:
    """This process's environment without the suite's settings, with `more`."""
    return locust_env(unset_settings(**more))


@dataclass
class Run:
    run_id: str
    out: Path  # the master's run folder
    codes: dict[str, int]
    logs: dict[str, str]

    def stats(self) -> dict[str, dict]:
        return {r["name"]: r for r in json.loads((self.out / "stats.json").read_text())["requests"]}

    def assert_ok(self) -> None:
        for name, code in self.codes.items():
            assert code == 0, f"{name} exited {code}:\n{self.logs[name][-3000:]}"
            assert "Traceback" not in self.logs[name], f"{name}:\n{self.logs[name][-3000:]}"


def run(topology, locustfile: str, master_args: list[str], tmp_path: Path, *,
        worker_env: dict[str, str] | None = None, timeout: float = 150) -> Run:
    """Master + two workers on their hosts, headless, to completion."""
    run_id = f"t-multihost-{locustfile}-{uuid.uuid4().hex[:8]}"
    master = topology["master"]
    out = tmp_path / "run"
    out.mkdir(parents=True, exist_ok=True)
    lf = str(REPO / "locustfiles" / f"{locustfile}.py")
    procs: dict[str, subprocess.Popen] = {}
    logs = {name: tmp_path / f"{name}.log" for name in ("master", *WORKERS)}
    try:
        with open(logs["master"], "w") as log:
            procs["master"] = start_locust(
                ["-f", lf, "--headless", "--master", "--expect-workers", str(len(WORKERS)),
                 "--master-bind-host", master.addr, "--master-bind-port", str(MASTER_PORT), *master_args],
                prefix=master.argv(), env=unset_settings(LOCUST_RESULTS_DIR=str(out), LOCUST_RUN_ID=run_id,
                                                         LOCUST_SPILL_DIR=str(tmp_path / "spill-master")),
                stdout=log, stderr=subprocess.STDOUT)
        for name in WORKERS:
            with open(logs[name], "w") as log:
                procs[name] = start_locust(
                    ["-f", lf, "--worker", "--master-host", master.addr, "--master-port", str(MASTER_PORT)],
                    prefix=topology[name].argv(),
                    env=unset_settings(LOCUST_SPILL_DIR=str(tmp_path / f"spill-{name}"),
                                       **(worker_env or {}).get(name, {})),
                    stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + timeout
        codes = {}
        for name, p in procs.items():
            try:
                codes[name] = p.wait(timeout=max(1.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                raise AssertionError(f"{name} still running after {timeout} s:\n"
                                     + "\n".join(f"--- {n}\n{logs[n].read_text()[-2000:]}" for n in logs)) from None
    finally:
        for p in procs.values():
            if p.poll() is None:
                os.killpg(p.pid, signal.SIGKILL)
                p.wait()
    return Run(run_id, out, codes, {n: path.read_text() for n, path in logs.items()})


def query(url: str, sql: str, params: dict | None = None) -> list[tuple]:
    client = chclient.connect(url)
    try:
        return client.execute(sql, params or {})
    finally:
        client.disconnect()


def run_rows(url: str, run_id: str) -> list[str]:
    """The run's start/end rows in event_sink.load_test_runs, by event type."""
    return sorted(r[0] for r in query(url, "SELECT event_type FROM event_sink.load_test_runs WHERE run_id = %(r)s",
                                      {"r": run_id}))


def interval_requests(url: str, run_id: str) -> dict[str, int]:
    """Requests per name over the run's interval rows (timed from the send; the open model's rows timed
    from the planned start count the same requests again)."""
    return dict(query(url, "SELECT name, sum(requests) FROM event_sink.load_test_request_stats "
                           "WHERE run_id = %(r)s AND timing = 'service' GROUP BY name", {"r": run_id}))
