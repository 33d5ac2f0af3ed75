"""Settings the suite shares, each resolved one way: the option given, else its environment
variable, else its one default. The defaults are the local stack's (`python -m stack`, loopback).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


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
KAFKA_BROKERS = Setting("KAFKA_BROKERS", "127.0.0.1:9092")
XAPI_DATABASE = Setting("LOCUST_XAPI_DATABASE", "xapi")  # where the pipeline stores xAPI statements (Aspects')
XAPI_TABLE = Setting("LOCUST_XAPI_TABLE", "xapi_events_all")
RUN_ID = Setting("LOCUST_RUN_ID", "")  # empty: each run makes a new one
RESULTS_DIR = Setting("LOCUST_RESULTS_DIR", "")  # the run folder (loadtesting.run sets it); empty: none
RESULTS = Setting("LOCUST_RESULTS", str(REPO / "results"))  # where run folders go (web UI tests, make targets)
SPILL_DIR = Setting("LOCUST_SPILL_DIR", str(REPO / ".run" / "monitor-spill"))  # rows ClickHouse did not take
MONITOR_INTERVAL = Setting("LOCUST_MONITOR_INTERVAL", "5")  # seconds between monitor samples
DRAIN_TIMEOUT = Setting("LOCUST_DRAIN_TIMEOUT", "300")  # seconds the monitor waits for the pipeline to drain
# Files of the suite: absolute, so a run started outside the checkout's root finds them.
KAFKA_DATA_FILE = Setting("LOCUST_KAFKA_DATA_FILE", str(REPO / "conf" / "kafka-data.json"))  # records produced
VECTOR_LOG_FILE = Setting("LOCUST_VECTOR_LOG_FILE", str(REPO / ".run" / "tracking.log"))  # the log Vector tails
