"""Fixtures for the monitor: clients of the session's real servers, chDB, a Locust run helper."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from plumbing import chclient
from tests.helpers import start_locust

LOCUSTFILE = str(Path(__file__).with_name("locustfile_monitor.py"))


@pytest.fixture(scope="session")
def ch(clickhouse):
    client = chclient.connect(clickhouse.url)
    yield client
    client.disconnect()


@pytest.fixture
def rds(redis_server):
    import redis

    client = redis.Redis.from_url(redis_server.url)
    client.flushdb()
    yield client
    # Nor do its keys outlive it: a stream left with a group and a lag (dev-analytics) held a later run
    # feeding that stream (tests/hardening/test_secrets.py) to its whole drain timeout.
    client.flushdb()
    client.close()


def chdb_render(sql: str, params: dict | None = None) -> str:
    """clickhouse-driver's %(name)s parameters as literals, so chDB runs the very same statement."""

    def lit(v) -> str:
        if isinstance(v, (list, tuple)):
            return "(" + ", ".join(lit(x) for x in v) + ")"
        if isinstance(v, str):
            assert "'" not in v and "\\" not in v, v  # test values are plain names
            return f"'{v}'"
        return str(v)

    return sql % {k: lit(v) for k, v in (params or {}).items()} if params else sql


def locust(args: list[str], env: dict | None = None, **popen) -> subprocess.Popen:
    """Start the monitor's test locustfile (no HTTP: its users fire request events) headless."""
    return start_locust(["-f", LOCUSTFILE, "--headless", "--users", "2", "--spawn-rate", "10", *args], env=env,
                        **{"start_new_session": False, **popen})


PY = sys.executable
