"""Fixtures of the rate capacity search: the stand-in pipeline of known capacity, a search run."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import uuid
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.helpers import REPO, run_locust, wait_for

LOCUSTFILE = str(REPO / "locustfiles" / "tracking.py")
# Short steps at small rates: each search takes well under a minute, whatever the machine's speed.
FAST = ["--capacity-step-time", "8", "--capacity-settle-time", "2", "--capacity-ramp-time", "1",
        "--capacity-sample-interval", "0.5", "--e2e-poll-interval", "0.5", "--monitor-interval", "1",
        "--drain-timeout", "30", "--capacity-drain-timeout", "30", "--no-sar"]


@dataclass
class Search:
    done: subprocess.CompletedProcess
    folder: Path
    run_id: str

    @property
    def output(self) -> str:
        return self.done.stdout + self.done.stderr

    @property
    def capacity(self) -> dict:
        return json.loads((self.folder / "capacity.json").read_text())


@pytest.fixture
def standin(request, clickhouse, redis_server, tmp_path):
    """Start `tests.capacity.standin` (LIMIT consumer|insert at RATE events/s, on BUS redis_bus or
    kafka_bus); returns (prefix, database)."""
    procs: list[subprocess.Popen] = []

    def start(limit: str, rate: float, *extra: str, bus: str = "redis_bus") -> tuple[str, str]:
        tag = uuid.uuid4().hex[:8]
        prefix, db = f"c{tag}", f"xapi_c{tag}"
        ready = tmp_path / f"ready-{tag}"
        # kafka_bus: group <prefix>-group (the search's --kafka-bus-group), none other tests share
        where = (["--redis-url", redis_server.url] if bus == "redis_bus"
                 else ["--kafka-brokers", request.getfixturevalue("kafka").url, "--group", f"{prefix}-group"])
        procs.append(subprocess.Popen(
            [sys.executable, "-m", "tests.capacity.standin", "--limit", limit, "--rate", str(rate), "--bus", bus,
             *where, "--stream", f"{prefix}-analytics", "--clickhouse-url", clickhouse.url,
             "--xapi-database", db, "--ready-file", str(ready), *extra],
            cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True))
        wait_for(lambda: ready.exists() or procs[-1].poll() is not None, timeout=60, what="stand-in ready")
        assert ready.exists(), f"the stand-in exited with {procs[-1].poll()}"
        return prefix, db

    yield start
    for p in procs:
        if p.poll() is None:
            os.killpg(p.pid, signal.SIGTERM)
            p.wait(timeout=30)


@pytest.fixture
def search(request, clickhouse, redis_server, tmp_path):
    """Run a tracking capacity search on a stand-in's stream (or topic: bus kafka_bus) and database;
    returns a Search."""

    def run(prefix: str, db: str, *extra: str, users: int = 20, timeout: float = 240,
            bus: str = "redis_bus") -> Search:
        run_id = f"cap-{uuid.uuid4().hex[:10]}"
        folder = tmp_path / run_id
        folder.mkdir()
        kafka = (["--kafka-bus-brokers", request.getfixturevalue("kafka").url, "--kafka-bus-group", f"{prefix}-group"]
                 if bus == "kafka_bus" else [])
        args = ["-f", LOCUSTFILE, "--headless", "-u", str(users), "-r", str(users), "--run-id", run_id,
                "--pipeline-backend", bus, *kafka, "--event-bus-prefix", prefix,
                "--event-bus-redis-url", redis_server.url, "--clickhouse-url", clickhouse.url,
                "--xapi-database", db, "--spill-dir", str(folder), "--capacity-search", *FAST, *extra]
        done = run_locust(args, env={"LOCUST_RESULTS_DIR": str(folder)}, timeout=timeout)
        return Search(done, folder, run_id)

    return run
