"""The versions stored with a run (run.json and load_test_meta): Python and the client libraries."""

from __future__ import annotations

import platform
from importlib import metadata

DISTRIBUTIONS = ("locust", "gevent", "geventhttpclient", "paho-mqtt", "confluent-kafka", "clickhouse-driver", "redis")


def versions() -> dict[str, str]:
    out = {"python": platform.python_version()}
    for dist in DISTRIBUTIONS:
        try:
            out[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            pass
    return out
