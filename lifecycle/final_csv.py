"""Locust's `--csv` files with the run's final figures.

Locust rewrites `<prefix>_stats.csv`, `_failures.csv` and `_exceptions.csv` once a second and only
closes them at exit, so the requests of the run's last second (acks that come in while users stop,
drops counted at the stop, a worker's last report) were missing there. Once every measurement is in
(`run_measured`), they are written again from the final statistics. The history file
(`_stats_history.csv`) stays a sample per second.
"""

from __future__ import annotations

import csv
import logging

from locust.runners import WorkerRunner
from locust.stats import PERCENTILES_TO_REPORT, StatsCSV

from lifecycle import end

log = logging.getLogger("final_csv")


@end.run_measured.add_listener
def write_final_csv(environment, **_kw) -> None:
    prefix = getattr(environment.parsed_options, "csv_prefix", None)
    if not prefix or isinstance(environment.runner, WorkerRunner):
        return
    stats = StatsCSV(environment, PERCENTILES_TO_REPORT)
    for suffix, write in (("_stats.csv", stats.requests_csv), ("_failures.csv", stats.failures_csv),
                          ("_exceptions.csv", stats.exceptions_csv)):
        try:
            with open(f"{prefix}{suffix}", "w", newline="") as f:
                write(csv.writer(f))
        except OSError as exc:  # the folder went away: Locust's own last rewrite stays
            log.warning("could not write the final %s%s: %s", prefix, suffix, exc.strerror or exc)
