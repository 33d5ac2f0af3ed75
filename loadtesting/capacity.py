"""Automatic capacity search: the highest user count the system serves without failures.

The search's options and decisions (no Locust import, so they are testable on their own);
the `LoadTestShape` that runs them is `loadtesting.capacity_shape.CapacitySearch`, which the
HTTP and MQTT locustfiles switch on with ``--capacity-search``.
It raises users (at --spawn-rate) in steps of --capacity-step until a step fails, then backs
off by half a step, and keeps halving the step around the boundary ("hones in") until the
step is below --capacity-resolution. A step fails when its measured window has a failure ratio
above --capacity-fail-ratio (default 0: any failure) or a p95 above --capacity-slo-p95.

Each step: ramp to the user count, wait --capacity-settle-time (so ramp effects and the
recovery from a failed step do not count), then measure for --capacity-step-time. The result,
every step and the three phases of the brief (minimal load, maximum sustainable load, the
load causing failure) are printed, written to ``capacity.json`` and ``phases.jsonl`` in the run
folder and stored with the run in ClickHouse.

On a distributed run the master measures from the stats its workers report every few
seconds, so a window's edges are as fine as that report interval.
"""

from __future__ import annotations

from dataclasses import dataclass

from plumbing.options import fraction, non_negative_float, positive_float, positive_int, require

# Defaults of the user search; the rate search (loadtesting.rate_capacity) measures shorter steps, as
# its backlog slope needs no new users to warm up.
STEP_TIME, SETTLE_TIME = 60.0, 10.0
RATE_STEP_TIME, RATE_SETTLE_TIME = 20.0, 5.0


def step_time(o, rate: bool = False) -> float:
    """Seconds each step is measured (--capacity-step-time, else the user or rate search's default)."""
    return o.capacity_step_time if o.capacity_step_time is not None else RATE_STEP_TIME if rate else STEP_TIME


def settle_time(o, rate: bool = False) -> float:
    """Seconds after a step's ramp before its measurement (--capacity-settle-time, else the default)."""
    if o.capacity_settle_time is not None:
        return o.capacity_settle_time
    return RATE_SETTLE_TIME if rate else SETTLE_TIME


def searching(o) -> bool:
    """--capacity-search: the run is a capacity search (of users, or of a rate for open-model generators)."""
    return bool(getattr(o, "capacity_search", False))


def add_arguments(parser) -> None:
    g = parser.add_argument_group("capacity search")
    g.add_argument("--capacity-search", action="store_true", default=False, env_var="LOCUST_CAPACITY_SEARCH",
                   help="find the highest user count with no failures (replaces --users/--run-time)")
    g.add_argument("--capacity-start-users", type=positive_int, default=10, env_var="LOCUST_CAPACITY_START_USERS",
                   help="users of the first step, the minimal-load phase (default %(default)s)")
    g.add_argument("--capacity-step", type=positive_int, default=100, env_var="LOCUST_CAPACITY_STEP",
                   help="users added per step while no step has failed (default %(default)s)")
    g.add_argument("--capacity-resolution", type=positive_int, default=10, env_var="LOCUST_CAPACITY_RESOLUTION",
                   help="stop honing in when the step is below this many users (default %(default)s)")
    g.add_argument("--capacity-step-time", type=positive_float, default=None, env_var="LOCUST_CAPACITY_STEP_TIME",
                   help=f"seconds each step is measured (default {STEP_TIME:g}; {RATE_STEP_TIME:g} for a rate search)")
    g.add_argument("--capacity-settle-time", type=non_negative_float, default=None,
                   env_var="LOCUST_CAPACITY_SETTLE_TIME",
                   help=f"seconds after a step's ramp before its measurement starts (default {SETTLE_TIME:g}; "
                        f"{RATE_SETTLE_TIME:g} for a rate search)")
    g.add_argument("--capacity-max-users", type=positive_int, default=100_000, env_var="LOCUST_CAPACITY_MAX_USERS",
                   help="never go above this many users (default %(default)s)")
    g.add_argument("--capacity-fail-ratio", type=fraction, default=0.0, env_var="LOCUST_CAPACITY_FAIL_RATIO",
                   help="a step fails above this failure ratio (default %(default)g: any failure)")
    g.add_argument("--capacity-slo-p95", type=positive_float, default=None, env_var="LOCUST_CAPACITY_SLO_P95",
                   help="a step also fails when its p95 response time (ms) is above this")


@dataclass(frozen=True)
class UserSearchSettings:
    """The user search's settings: the --capacity-* options, checked once here (each value by its
    argparse type; what involves two values by `from_options`)."""

    start_users: int
    step: int
    resolution: int
    max_users: int
    step_time: float
    settle_time: float
    fail_ratio: float
    slo_p95: float | None
    spawn_rate: float  # Locust's --spawn-rate: the ramp speed between steps

    @classmethod
    def from_options(cls, o) -> UserSearchSettings:
        """The settings of `o`; OptionError (one line) when they do not fit together."""
        require(o.capacity_max_users >= o.capacity_start_users,
                f"--capacity-max-users {o.capacity_max_users}: expected at least --capacity-start-users "
                f"({o.capacity_start_users})")
        require((o.spawn_rate or 0) > 0, f"--spawn-rate {o.spawn_rate}: expected users per second > 0")
        return cls(o.capacity_start_users, o.capacity_step, o.capacity_resolution, o.capacity_max_users,
                   step_time(o), settle_time(o), o.capacity_fail_ratio, o.capacity_slo_p95, float(o.spawn_rate))


@dataclass
class Step:
    users: int
    start: float  # epoch seconds of the measured window
    end: float
    requests: int
    failures: int
    rps: float
    fail_ratio: float
    p95_ms: float
    ok: bool
    why: str = ""


def decide(steps: list[Step], step: int, resolution: int, max_users: int) -> int | None:
    """Users of the next step, or None when the search is over.

    Pure so the search is testable without a load test: climb by `step` until a step fails,
    then bisect between the best passing and the lowest failing count above it (each bisection
    halves the step) until they are at most `resolution` apart.
    """
    lo = max((s.users for s in steps if s.ok), default=0)
    above = [s.users for s in steps if not s.ok and s.users > lo]
    if not above:  # still climbing (or a failure below a later pass: climb again from the pass)
        top = max(s.users for s in steps)
        return None if top >= max_users else min(max(top, lo) + step, max_users)
    hi = min(above)
    if hi - lo <= resolution:
        return None
    return (lo + hi) // 2


def summary_text(result: dict) -> str:
    lines = ["", "Capacity search", f"{'users':>8} {'rps':>10} {'requests':>9} {'failures':>9} {'p95 ms':>8}  result"]
    for s in result["steps"]:
        lines.append(f"{s['users']:>8} {s['rps']:>10.1f} {s['requests']:>9} {s['failures']:>9} {s['p95_ms']:>8.0f}  "
                     + ("ok" if s["ok"] else f"failed: {s['why']}"))
    if result["max_sustainable_users"]:
        lines.append(f"maximum sustainable load: {result['max_sustainable_users']} users, "
                     f"{result['max_sustainable_rps']:.1f} requests/s, p95 {result['p95_ms_at_max']:.0f} ms")
    else:
        lines.append("maximum sustainable load: none (" + ("no step passed before the stop" if result.get("stopped")
                                                          else "the first step already failed") + ")")
    if result.get("stopped"):
        lines.append(f"stopped before the search ended (while at {result['stopped_during']} users): a partial result")
    elif result["first_failing_users"] is not None:
        lines.append(f"failures start at {result['first_failing_users']} users ({result['failure_reason']}); "
                     f"resolution {result['resolution']} users")
    else:
        lines.append("no step failed up to --capacity-max-users")
    return "\n".join(lines)
