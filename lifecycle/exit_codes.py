"""The one table of the suite's exit codes; docs/exit-codes.md holds `render_table()`'s output
(tests/test_exit_codes.py checks that they agree)."""

from __future__ import annotations

from enum import IntEnum


class ExitCode(IntEnum):
    """How a Locust run (or `python -m monitors`) ends. Checks are applied in this order: the first
    failing one sets the code; an interrupted run keeps 130/143 whatever the checks say, and a run
    that lost a worker process (WORKER_DIED) or its monitor (MONITOR_CRASH) says so first: its
    figures are incomplete."""

    OK = 0
    ERRORS = 1
    BAD_OPTION = 2
    FAIL_RATIO = 3
    P95 = 4
    MAX_LAG = 5
    DRAIN = 6
    MONITOR_CRASH = 7
    MIN_RATE = 8
    E2E_P95 = 9
    WORKER_DIED = 10
    SIGINT = 130
    SIGTERM = 143

    @property
    def meaning(self) -> str:
        return MEANINGS[self]


MEANINGS = {
    ExitCode.OK: "the run ended as planned (`--run-time`, the event budget, the capacity search's end) and every "
                 "check passed",
    ExitCode.ERRORS: "requests failed (Locust's `--exit-code-on-error`, default 1), or a bad option or an "
                     "unreachable target before the run (`error: …`: `--host`, `--mqtt-url`, `--mqtt-ca-file`, "
                     "`--vector-log-file`, `--clickhouse-url`, a sampler URL …)",
    ExitCode.BAD_OPTION: "an option Locust's parser rejects (`locust: error: …`), or an unhandled exception in a "
                         "greenlet (Locust); `python -m loadtesting.run`: an unknown kind",
    ExitCode.FAIL_RATIO: "`--check-fail-ratio` failed",
    ExitCode.P95: "`--check-p95` failed (the generator's own requests: Aggregated)",
    ExitCode.MAX_LAG: "`--check-max-lag` failed",
    ExitCode.DRAIN: "`--check-drain-time` failed (or the drain never ended, or is unknown: a lag that cannot "
                    "be measured, e.g. no consumer group reads the Redis stream)",
    ExitCode.MONITOR_CRASH: "the monitor's sampling greenlet crashed (logged; the run went on)",
    ExitCode.MIN_RATE: "`--check-min-rate` failed: an open-model run's achieved rate fell short of its target by "
                       "more than the tolerance, or iterations were dropped ([open-model.md](open-model.md))",
    ExitCode.E2E_P95: "`--check-e2e-p95` failed: the end-to-end latency's p95 (every E2E row merged) was above "
                      "it, or nothing was measured end to end",
    ExitCode.WORKER_DIED: "a worker process Locust forked (`--processes N`) exited before the run's end (logged: "
                          "its pid and exit code); the run went on with the others, their measurements kept",
    ExitCode.SIGINT: "interrupted: Ctrl-C (SIGINT) before the run's planned end",
    ExitCode.SIGTERM: "interrupted: SIGTERM before the run's planned end",
}

# A run stopped by a signal before its planned end (128 + the signal's number, as shells report it).
INTERRUPTED = {"SIGINT": ExitCode.SIGINT, "SIGTERM": ExitCode.SIGTERM}


def render_table() -> str:
    """The Locust runs' table of docs/exit-codes.md."""
    return "\n".join(["| code | meaning |", "|---|---|", *(f"| {c.value} | {c.meaning} |" for c in ExitCode)])


if __name__ == "__main__":
    print(render_table())
