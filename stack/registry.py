"""The stack's registry: service factories by name, their default ports and their URL variables.

Filled by stack.services and stack.ralph (imported by the `stack` package); stack.core reads it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from stack.core import Endpoint, Service, Stack

# Fixed ports of `make demo`'s stack, away from the servers' standard ports so a system
# service on the same machine does not collide. Override with STACK_<KEY>_PORT.
DEFAULT_PORTS = {
    "clickhouse": 19000,
    "clickhouse-http": 18123,
    "redis": 16379,
    "mosquitto": 11883,
    "kafka": 19092,
    "site": 18080,
    "site-wsgi": 18081,
}

SERVICES: dict[str, Callable[[Stack], Service]] = {}


def register(name: str) -> Callable:
    def deco(factory: Callable[[Stack], Service]) -> Callable[[Stack], Service]:
        SERVICES[name] = factory
        return factory

    return deco


# The suite's environment variable for each service's URL; stack.ralph adds its own.
ENV_NAMES = {
    "clickhouse": "LOCUST_CLICKHOUSE_URL",
    "redis": "LOCUST_REDIS_URL",
    "mosquitto": "LOCUST_MQTT_URL",
    "kafka": "KAFKA_BROKERS",
    "site": "LOCUST_HOST",
}


def env_for(endpoints: dict[str, Endpoint]) -> dict[str, str]:
    """The suite's environment variables for these endpoints (what `stack.env` holds)."""
    return {ENV_NAMES[n]: e.url for n, e in endpoints.items() if n in ENV_NAMES}


