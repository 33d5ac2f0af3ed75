"""The reference pipeline ends on SIGTERM in every state, its ClickHouse gone or hanging included.

Orphaned `python -m targets.pipeline redis_bus` workers (their test killed, their ClickHouse gone) kept
running after SIGTERM: a batch's insert retried a dead ClickHouse for 7.5 s, then the next batch did,
until the whole list had gone to the dead queue.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import uuid

import psutil
import pytest
import redis

from openedx_erb.events import EventFactory, TrackedLearner
from stack import Stack
from tests.helpers import REPO, wait_for

EVENTS = 500  # five batches of 100: the former code retried each for 7.5 s


@pytest.fixture
def own_clickhouse(tmp_path):
    """A ClickHouse of this test's own, to kill or freeze."""
    s = Stack(tmp_path / "stack", free_ports=True)
    endpoint = s.start("clickhouse")["clickhouse"]
    yield s, endpoint
    s.stop()


def start_pipeline(clickhouse_url: str, redis_url: str, tmp_path, name: str) -> subprocess.Popen:
    ready = tmp_path / "ready"
    proc = subprocess.Popen([sys.executable, "-m", "targets.pipeline", "redis_bus", "--clickhouse-url", clickhouse_url,
                             "--redis-url", redis_url, "--backend-name", name, "--topic-prefix", name,
                             "--workers", "1", "--batch-size", "100", "--batch-interval", "1",
                             "--xapi-database", f"xapi_{name}", "--ready-file", str(ready)],
                            cwd=REPO, stdout=(tmp_path / "pipeline.log").open("w"), stderr=subprocess.STDOUT,
                            start_new_session=True)
    wait_for(lambda: ready.exists() or proc.poll() is not None, timeout=60, what="the pipeline ready")
    assert proc.poll() is None, (tmp_path / "pipeline.log").read_text()[-2000:]
    return proc


def queue_events(r: redis.Redis, name: str) -> None:
    """EVENTS tracking events in ERB's batch list, as a consumer queues them."""
    factory = EventFactory("course-v1:Org+Shutdown+2026")
    learners = [TrackedLearner(i, f"lt__{i:06d}") for i in range(1, 51)]
    r.lpush(f"events_router_queue_{name}",
            *[json.dumps(factory.next_event(learners[i % 50])) for i in range(EVENTS)])


def group_alive(pgid: int) -> list[psutil.Process]:
    """The processes of a process group still running (zombies awaiting their reaper are done)."""
    alive = []
    for p in psutil.process_iter(["status"]):
        try:
            if os.getpgid(p.pid) == pgid and p.info["status"] != psutil.STATUS_ZOMBIE:
                alive.append(p)
        except (ProcessLookupError, psutil.NoSuchProcess):
            pass
    return alive


def test_sigterm_ends_an_orphaned_worker_retrying_a_gone_clickhouse_and_keeps_its_events(
        own_clickhouse, redis_server, tmp_path):
    stack, ch = own_clickhouse
    name = f"shut{uuid.uuid4().hex[:8]}"
    r = redis.Redis.from_url(redis_server.url)
    proc = start_pipeline(ch.url, redis_server.url, tmp_path, name)
    try:
        stack.stop("clickhouse")
        queue_events(r, name)
        queue = f"events_router_queue_{name}"
        wait_for(lambda: r.llen(queue) < EVENTS, timeout=30, what="a batch popped (its insert retrying)")
        os.kill(proc.pid, signal.SIGKILL)  # its test killed: the worker is an orphan
        proc.wait()
        assert group_alive(proc.pid), "the worker should outlive its parent"
        os.killpg(proc.pid, signal.SIGTERM)
        wait_for(lambda: not group_alive(proc.pid), timeout=10, what="the orphaned worker to end on SIGTERM")
        # A batch that failed while stopping goes back to the list for the next start: none given up.
        assert (r.llen(queue), r.llen(f"dead_queue_{name}")) == (EVENTS, 0)
    finally:
        for p in group_alive(proc.pid):
            p.kill()
        r.delete(f"events_router_queue_{name}", f"dead_queue_{name}", f"last_sent_{name}", f"{name}-analytics")
        r.close()


def test_sigterm_ends_the_pipeline_within_its_grace_while_clickhouse_hangs(own_clickhouse, redis_server, tmp_path):
    stack, ch = own_clickhouse
    name = f"shut{uuid.uuid4().hex[:8]}"
    r = redis.Redis.from_url(redis_server.url)
    proc = start_pipeline(ch.url, redis_server.url, tmp_path, name)
    try:
        for pid in stack.pids("clickhouse"):
            os.kill(pid, signal.SIGSTOP)  # accepts connections, answers nothing: an insert blocks 30 s
        queue_events(r, name)
        wait_for(lambda: r.llen(f"events_router_queue_{name}") < EVENTS, timeout=30, what="a batch popped")
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=15)  # the worker's grace (5 s), then the parent's join
        except subprocess.TimeoutExpired:
            pytest.fail("the pipeline still runs 15 s after SIGTERM")
        out = (tmp_path / "pipeline.log").read_text()
        assert "still stopping 5 s after the signal" in out, out[-2000:]
    finally:
        for pid in stack.pids("clickhouse"):
            os.kill(pid, signal.SIGCONT)
        for p in group_alive(proc.pid):
            p.kill()
        r.delete(f"events_router_queue_{name}", f"dead_queue_{name}", f"last_sent_{name}", f"{name}-analytics")
        r.close()
