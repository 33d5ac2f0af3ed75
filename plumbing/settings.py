"""Settings the suite shares, each resolved one way: the option given, else its environment
variable, else its one default. The defaults are the local stack's (`python -m stack`, loopback).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass


@dataclass(frozen=True)
class Setting:
    env: str
    default: str

    def resolve(self, option: str | None = None, env: Mapping[str, str] | None = None) -> str:
        """`option` when given, else the environment variable when set and not empty, else the default."""
        env = os.environ if env is None else env
        return option or env.get(self.env) or self.default


CLICKHOUSE_URL = Setting("LOCUST_CLICKHOUSE_URL", "clickhouse://default@127.0.0.1:19000/default")
MONITOR_DATABASE = Setting("LOCUST_MONITOR_DATABASE", "event_sink")
REDIS_URL = Setting("LOCUST_REDIS_URL", "redis://127.0.0.1:6379/0")  # the standard port, as for MQTT and Kafka
