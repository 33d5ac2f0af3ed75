"""Fixtures for the results workflow: an endpoint with a known limit and one capacity-search run."""

from __future__ import annotations

import json
import re
import socket
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from stack import free_port
from tests.helpers import REPO, run_locust, wait_for

CAP = 13  # concurrent requests the capped endpoint serves
RESOLUTION = 2
LOCUSTFILE = str(Path(__file__).with_name("capped_locustfile.py"))


def _accepts(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
        return True
    except OSError:
        return False


@pytest.fixture(scope="session")
def capped():
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "targets.capped.server", "--port", str(port),
                             "--max-concurrent", str(CAP), "--service-ms", "20"], cwd=REPO,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_for(lambda: _accepts(port), timeout=30, what="capped endpoint")
    yield f"http://127.0.0.1:{port}"
    proc.terminate()
    proc.wait(timeout=10)


@dataclass
class CapacityRun:
    run_id: str
    results: Path
    folder: Path
    output: str
    returncode: int
    clickhouse_url: str

    def json(self, name: str) -> dict:
        return json.loads((self.folder / name).read_text())


@pytest.fixture(scope="session")
def capacity_run(capped, clickhouse, tmp_path_factory) -> CapacityRun:
    """One capacity search against the capped endpoint through `python -m loadtesting.run`."""
    results = tmp_path_factory.mktemp("results")
    done = run_locust(
        [LOCUSTFILE, "--results", str(results), "-H", capped,
         "--capacity-search", "--capacity-start-users", "4", "--capacity-step", "8",
         "--capacity-resolution", str(RESOLUTION), "--capacity-step-time", "3", "--capacity-settle-time", "1",
         "--spawn-rate", "50", "--clickhouse-url", clickhouse.url, "--monitor-interval", "1",
         "--spill-dir", str(results / "spill")], via=["loadtesting.run"], timeout=300)
    run_id = re.search(r"^run (\S+):", done.stdout, re.M).group(1)
    return CapacityRun(run_id, results, results / run_id, done.stdout + done.stderr, done.returncode, clickhouse.url)
