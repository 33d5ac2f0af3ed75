"""Shared fixtures: one real-server stack per test session, on free loopback ports.

Each server starts the first time a test asks for it and stops (by PID) when the session
ends. Tests poll conditions with `tests.helpers.wait_for`; they never sleep to synchronise.
"""

from __future__ import annotations

import os
import shutil
import tempfile

import pytest

from stack import Endpoint, Stack

SPILL_DIR = tempfile.mkdtemp(prefix="loadtest-spill-")


def pytest_configure(config) -> None:
    # Every monitor the suite runs (Locust, standalone, Kafka latency) spills into this session's
    # own folder, never into the checkout's .run/monitor-spill, where the user's next run would find
    # the rows (and, before spill files kept their destination, wrote them into its ClickHouse).
    os.environ["LOCUST_SPILL_DIR"] = SPILL_DIR


def pytest_unconfigure(config) -> None:
    shutil.rmtree(SPILL_DIR, ignore_errors=True)


def pytest_collection_finish(session) -> None:
    # Importing locust monkey-patches the whole pytest process with gevent (and breaks ssl when
    # requests was imported first). Tests run Locust as a subprocess (tests.helpers.run_locust)
    # and import only modules that do not import locust.
    import sys

    if "locust" in sys.modules:
        raise pytest.UsageError(
            "a test module imported locust into the pytest process; run Locust as a subprocess "
            "(tests.helpers.run_locust) and keep locust imports out of modules tests import"
        )


@pytest.fixture(scope="session")
def stack(tmp_path_factory) -> Stack:
    s = Stack(tmp_path_factory.mktemp("stack"), free_ports=True)
    yield s
    s.stop()


@pytest.fixture(scope="session")
def clickhouse(stack) -> Endpoint:
    """Debian's ClickHouse 18.16 server; `.url` is clickhouse://…, `.extra['http_port']` its HTTP port."""
    return stack.start("clickhouse")["clickhouse"]


@pytest.fixture(scope="session")
def redis_server(stack) -> Endpoint:
    return stack.start("redis")["redis"]


@pytest.fixture(scope="session")
def mosquitto(stack) -> Endpoint:
    return stack.start("mosquitto")["mosquitto"]


@pytest.fixture(scope="session")
def kafka(stack) -> Endpoint:
    """Tansu (Kafka protocol); `.url` is the bootstrap address host:port."""
    return stack.start("kafka")["kafka"]


@pytest.fixture(scope="session")
def site(stack) -> Endpoint:
    """The LAMPI site (baseline profile: gunicorn, 1 worker, behind nginx) with 10,000 users."""
    from tests.helpers import load_site_users

    endpoint = stack.start("site")["site"]
    load_site_users(endpoint, count=10_000)
    return endpoint


@pytest.fixture(scope="session")
def chdb_session(tmp_path_factory):
    """Current ClickHouse (chDB, in process): every DDL and query also runs here."""
    from chdb import session

    s = session.Session(str(tmp_path_factory.mktemp("chdb")))
    yield s
    s.close()


def pytest_collection_modifyitems(config, items) -> None:
    # Under pytest-xdist (make test), the network-namespace hosts run on one worker, one at a time:
    # each picks the first free /24 of 10.213.0.0/16 and two at once could pick the same.
    for item in items:
        if item.nodeid.startswith("tests/multihost/"):
            item.add_marker(pytest.mark.xdist_group("network-namespaces"))
