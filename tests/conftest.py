"""Shared fixtures: one real-server stack per test session, on free loopback ports.

Each server starts the first time a test asks for it and stops (by PID) when the session
ends. Tests poll conditions with `tests.helpers.wait_for`; they never sleep to synchronise.
"""

from __future__ import annotations

import pytest

from stack import Endpoint, Stack


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
