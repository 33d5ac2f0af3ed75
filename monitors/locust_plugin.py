"""Imported by every locustfile: run id, pipeline monitor, ClickHouse sink, thresholds.

(Placeholder of the foundation; the monitor issue fills it in.)
"""

from __future__ import annotations

import os

from locust import events

from monitors.runid import new_run_id


@events.init_command_line_parser.add_listener
def _options(parser) -> None:
    group = parser.add_argument_group("run")
    group.add_argument("--run-id", default="", env_var="LOCUST_RUN_ID",
                       help="id of this run (default: a new one at each test start)")


@events.test_start.add_listener
def _start(environment, **_kw) -> None:
    o = environment.parsed_options
    environment.run_id = (o.run_id if o is not None and o.run_id else None) or os.environ.get(
        "LOCUST_RUN_ID") or new_run_id()
