"""Fixtures for the tracking pipeline: the reference pipeline per backend, a generator run helper."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import uuid
from dataclasses import dataclass
from pathlib import Path

import pytest

from plumbing import chclient
from stack import free_port
from tests.helpers import REPO, run_locust, wait_for

LOCUSTFILE = str(REPO / "locustfiles" / "tracking.py")


@dataclass
class Pipeline:
    backend: str
    db: str
    prefix: str
    log_file: Path
    metrics_port: int
    proc: subprocess.Popen | None = None
    args: tuple = ()

    def generator_args(self, clickhouse, redis_server, kafka) -> list[str]:
        args = ["--pipeline-backend", self.backend, "--xapi-database", self.db, "--clickhouse-url", clickhouse.url,
                "--event-bus-prefix", self.prefix,
                "--celery-broker-url", redis_server.url, "--event-bus-redis-url", redis_server.url,
                "--celery-queues", f"{self.prefix}.lms", "--celery-queue", f"{self.prefix}.lms",
                "--erb-lists", f"events_router_queue_{self.prefix},dead_queue_{self.prefix}",
                "--vector-log-file", str(self.log_file),
                "--vector-metrics-url", f"http://127.0.0.1:{self.metrics_port}/metrics"]
        if kafka is not None:
            args += ["--kafka-bus-brokers", kafka.url, "--kafka-bus-group", "event_routing_backends"]
        else:  # Tansu's high watermark is off by a batch (DEVELOPERS.md): its bus lag is no drain signal here
            args += ["--monitor-backend", self.backend]
        return args

    def stop(self) -> None:
        """SIGTERM to its process group; SIGKILL if it has not ended in 60 s (none is left running)."""
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        self.proc = None


@pytest.fixture
def pipeline(request, clickhouse, redis_server, tmp_path):
    """A function starting `python -m targets.pipeline BACKEND` on its own database, stream and lists."""
    started: list[Pipeline] = []
    kafka = request.getfixturevalue("kafka") if "kafka_bus" in request.node.name else None

    def start(backend: str, *extra: str, p: Pipeline | None = None) -> Pipeline:
        if p is None:
            tag = uuid.uuid4().hex[:8]
            p = Pipeline(backend, f"xapi_{tag}", f"t{tag}", tmp_path / "tracking.log", free_port())
        ready = tmp_path / f"ready-{uuid.uuid4().hex[:6]}"
        cmd = [sys.executable, "-m", "targets.pipeline", backend, "--clickhouse-url", clickhouse.url,
               "--xapi-database", p.db, "--redis-url", redis_server.url, "--topic-prefix", p.prefix,
               "--queues", f"{p.prefix}.lms", "--log-file", str(p.log_file), "--metrics-port", str(p.metrics_port),
               "--backend-name", p.prefix, "--ready-file", str(ready), *(p.args or extra)]
        if kafka is not None:
            cmd += ["--kafka-brokers", kafka.url, "--session-timeout-ms", "6000"]
        env = dict(os.environ)
        p.args = p.args or extra
        p.stop()  # a restart: the former process first
        p.proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                  start_new_session=True)
        if p not in started:
            started.append(p)  # stopped at the test's end even if it never gets ready
        wait_for(lambda: ready.exists() or p.proc.poll() is not None, timeout=60, what=f"{backend} pipeline ready")
        assert ready.exists(), f"the {backend} pipeline exited with {p.proc.poll()} before it was ready"
        return p

    yield start
    for p in started:
        p.stop()


def generate(pipeline: Pipeline, clickhouse, redis_server, kafka, *extra: str, users: int = 50,
             processes: int = 0, timeout: float = 180, results: Path | None = None) -> tuple[subprocess.CompletedProcess, dict]:
    """Run the tracking locustfile headless to its end; returns the process and its end row's extra."""
    run_id = f"t-{uuid.uuid4().hex[:10]}"
    args = ["-f", LOCUSTFILE, "--headless", "-u", str(users), "-r", str(users), "--run-id", run_id,
            "--monitor-interval", "0.5", "--drain-timeout", "60", "--spill-dir", str(results or "/tmp"),
            *pipeline.generator_args(clickhouse, redis_server, kafka), *extra]
    if processes:
        args += ["--processes", str(processes)]
    env = dict(os.environ)
    if results is not None:
        env["LOCUST_RESULTS_DIR"] = str(results)
    done = run_locust(args, env=env, timeout=timeout)
    client = chclient.connect(clickhouse.url)
    rows = client.execute("SELECT extra FROM event_sink.load_test_runs WHERE run_id = %(r)s AND event_type = 'end'",
                          {"r": run_id})
    client.disconnect()
    end = json.loads(rows[0][0]) if rows else {}
    end["run_id"] = run_id
    return done, end


def stored(clickhouse, db: str) -> tuple[int, int]:
    """(rows, distinct statement ids) in the pipeline's xAPI table."""
    client = chclient.connect(clickhouse.url)
    n, distinct = client.execute(f"SELECT count(), uniqExact(event_id) FROM {db}.xapi_events_all")[0]
    client.disconnect()
    return n, distinct


def summary_line(text: str) -> str:
    m = re.search(r"tracking run \S+: sent .*", text)
    return m.group(0) if m else ""
