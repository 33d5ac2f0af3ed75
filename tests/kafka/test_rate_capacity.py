"""The Kafka generator's capacity search over messages/s, against a stream processor limited to a
known rate (tests.capacity.paced_processor)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys

import pytest

from tests.capacity.conftest import FAST
from tests.helpers import REPO, log_of, run_locust, wait_for


@pytest.fixture
def paced(kafka, topics, tmp_path):
    procs = []

    def start(rate: float, latency_ms: int = 0) -> None:
        ready = tmp_path / "ready"
        procs.append(subprocess.Popen(
            [sys.executable, "-m", "tests.capacity.paced_processor", "--brokers", kafka.url, "--input-topic",
             topics[0], "--output-topic", topics[1], "--group", f"paced-{topics[0]}", "--rate", str(rate),
             "--latency-ms", str(latency_ms), "--ready-file", str(ready)], cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            start_new_session=True))
        wait_for(lambda: ready.exists() or procs[-1].poll() is not None, timeout=60, what="paced processor ready")
        assert ready.exists(), f"the paced processor exited with {procs[-1].poll()}"

    yield start
    for p in procs:
        if p.poll() is None:
            os.killpg(p.pid, signal.SIGTERM)
            p.wait(timeout=30)


def test_a_processor_limited_to_a_known_rate_is_found_within_the_resolution(kafka, topics, paced, tmp_path):
    rate = 80  # messages/s; steps 50, 90 (fails), 70: resolution 20
    latency = 1040  # ms, exactly, while it keeps up: Locust's response-time buckets would say 1000
    paced(rate, latency)
    at = FAST.index("--e2e-poll-interval")
    fast = FAST[:at] + FAST[at + 2:]  # a tracking option
    done = run_locust(["-f", str(REPO / "locustfiles" / "kafka.py"), "--headless", "-u", "20", "-r", "20",
                       "--kafka-brokers", kafka.url, "--kafka-topic", topics[0], "--kafka-latency-topic", topics[1], "--capacity-search", "--capacity-start-rate", "50",
                       "--capacity-rate-step", "40", "--capacity-rate-resolution", "20", "--no-monitor", *fast],
                      env={"LOCUST_RESULTS_DIR": str(tmp_path)}, timeout=240)
    assert done.returncode == 0, log_of(done.stderr)
    cap = json.loads((tmp_path / "capacity.json").read_text())
    assert cap["unit"] == "messages" and rate - 20 <= cap["sustained_messages_per_second"] <= rate, log_of(done.stderr)
    failed = next(s for s in cap["steps"] if s["verdict"] == "fail")
    assert failed["target"] > rate and failed["backlog"]["sent − stored"]["verdict"] in ("growing", "unclear")
    # The first step's output latency (the processor kept up, no backlog before it): the exact window p95,
    # not a bucket's (a step after a failed one may still meet events the processor is catching up on).
    first = cap["steps"][0]
    assert first["verdict"] == "pass" and first["e2e_p95_ms"] == latency, first
    assert "capacity search: 50 messages/s → offered" in done.stderr


def test_a_step_is_judged_by_the_exact_p95_of_its_window(kafka, topics, paced, tmp_path):
    latency, slo = 1040, 1020  # Locust's buckets round 1040 to 1000, under the SLO; the exact p95 is above it
    paced(200, latency)
    at = FAST.index("--e2e-poll-interval")
    fast = FAST[:at] + FAST[at + 2:]
    # Two processes, each reading half the output topic's partitions: the step's p95 is that of their
    # histograms added on the master.
    done = run_locust(["-f", str(REPO / "locustfiles" / "kafka.py"), "--headless", "-u", "40", "-r", "40",
                       "--processes", "2", "--kafka-brokers", kafka.url, "--kafka-topic", topics[0], "--kafka-latency-topic", topics[1],
                       "--capacity-search", "--capacity-start-rate", "20", "--capacity-rate-resolution", "20",
                       "--capacity-slo-e2e-p95", str(slo), "--no-monitor", *fast, "--capacity-step-time", "4"],
                      env={"LOCUST_RESULTS_DIR": str(tmp_path)}, timeout=120)
    assert done.returncode == 0, done.stderr[-3000:]
    [step] = json.loads((tmp_path / "capacity.json").read_text())["steps"]
    assert step["e2e_p95_ms"] == latency and step["verdict"] == "fail", step
    assert f"end-to-end p95 {latency} ms > SLO {slo} ms" in step["why"]


def test_the_kafka_search_needs_the_output_topic(kafka):
    done = run_locust(["-f", str(REPO / "locustfiles" / "kafka.py"), "--headless", "--no-monitor",
                       "--kafka-brokers", kafka.url, "--capacity-search"], timeout=60)
    assert done.returncode != 0 and "expected --kafka-latency-topic" in done.stderr
    assert "Traceback" not in done.stderr
