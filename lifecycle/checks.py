"""The run's --check-* thresholds: declared, validated and judged here at the run's end (after
`run_measured`); each failing check is one `check failed:` line and its exit code (ExitCode)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from locust import events

from lifecycle.exit_codes import ExitCode
from plumbing import run_state
from plumbing.options import ratio
from plumbing.web_options import per_test


@events.init_command_line_parser.add_listener
def _options(parser) -> None:
    g = parser.add_argument_group("pipeline monitor")
    per_test(g.add_argument("--check-fail-ratio", type=ratio, default=None, env_var="LOCUST_CHECK_FAIL_RATIO",
                   help=f"exit {ExitCode.FAIL_RATIO.value} if the failure ratio (0-1) is above this"))
    per_test(g.add_argument("--check-p95", type=float, default=None, env_var="LOCUST_CHECK_P95",
                   help=f"exit {ExitCode.P95.value} if the 95th percentile response time (ms) of the generator's own "
                        "requests (Aggregated: E2E and DROPPED rows are outside it) is above this"))
    per_test(g.add_argument("--check-max-lag", type=int, default=None, env_var="LOCUST_CHECK_MAX_LAG",
                   help=f"exit {ExitCode.MAX_LAG.value} if any sampled backlog (events) was above this"))
    per_test(g.add_argument("--check-drain-time", type=float, default=None, env_var="LOCUST_CHECK_DRAIN_TIME",
                   help=f"exit {ExitCode.DRAIN.value} if draining took longer than this many seconds (or never "
                        "ended)"))


@dataclass
class Drain:
    """What the monitor measured of the drain (plumbing.run_state); None: no monitor ran."""

    drained: bool | None = None
    seconds: float | None = None
    max_backlog: int = 0
    measured: bool = False
    unknown: str = ""  # measured, but drained is None: why (e.g. no consumer group reads stream X)


def record_drain(environment, drained: bool | None, seconds: float | None, max_backlog: int,
                 unknown: str = "") -> None:
    """The monitor's drain figures, for --check-max-lag and --check-drain-time; `drained` None with
    `unknown` saying why when a lag could not be measured."""
    d = run_state.reset(environment, Drain)
    d.drained, d.seconds, d.max_backlog, d.measured, d.unknown = drained, seconds, max_backlog, True, unknown


def drain(environment) -> Drain:
    """The drain figures of this run (not `measured` when no monitor ran)."""
    return run_state.of(environment, Drain)


def judge(environment, failed: Callable[..., None]) -> None:
    """Apply the --check-* thresholds to this run's figures; `failed(environment, code, why)` for each."""
    o = environment.parsed_options
    if o is None or not hasattr(o, "check_fail_ratio"):
        return
    total = environment.stats.total
    d = run_state.of(environment, Drain)
    if o.check_fail_ratio is not None and total.fail_ratio > o.check_fail_ratio:
        failed(environment, ExitCode.FAIL_RATIO,
               f"failure ratio {total.fail_ratio:.4f} > --check-fail-ratio {o.check_fail_ratio}")
    p95 = total.get_response_time_percentile(0.95)
    if o.check_p95 is not None and p95 > o.check_p95:
        failed(environment, ExitCode.P95, f"p95 {p95} ms > --check-p95 {o.check_p95}")
    if not d.measured:
        return  # no monitor ran (--no-monitor): no backlog or drain to judge
    if o.check_max_lag is not None and d.unknown:
        failed(environment, ExitCode.MAX_LAG, f"max backlog unknown ({d.unknown}; --check-max-lag {o.check_max_lag})")
    elif o.check_max_lag is not None and d.max_backlog > o.check_max_lag:
        failed(environment, ExitCode.MAX_LAG, f"max backlog {d.max_backlog} > --check-max-lag {o.check_max_lag}")
    if o.check_drain_time is not None and (not d.drained or (d.seconds or 0) > o.check_drain_time):
        how = (f"unknown ({d.unknown})" if d.unknown else "never finished" if not d.drained
               else f"took {d.seconds} s")
        failed(environment, ExitCode.DRAIN, f"drain {how} "
                                            f"(--check-drain-time {o.check_drain_time})")
