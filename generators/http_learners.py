"""The LAMPI site's HTTP learners (their entry point is locustfiles/http.py): the options, their checks
before the run, the open model's plan, and what each learner needs of them (`Learners`).

Users `user_000000`… come from `manage.py loadtestingdata`; the password is the username
reversed and user n owns device `'%x' % (0x1e0000000000 + n)` (generators.lampi_data).
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from locust import events

from generators import open_model
from generators.common import check_http_host
from loadtesting import webui_run
from plumbing import run_state
from plumbing.options import non_negative_float, non_negative_int, positive_int, require
from plumbing.web_options import per_test

OPEN_MODEL = "learner tasks"  # the DROPPED row's name
LAST_FAKE_USER = 999_999  # user_%06d


@events.init_command_line_parser.add_listener
def _options(parser) -> None:
    group = parser.add_argument_group("LAMPI HTTP learners")
    group.add_argument("--fake-users", type=positive_int, default=10_000, env_var="LOCUST_FAKE_USERS",
                       help="how many fake users exist (user_000000 …); each learner picks one at random")
    group.add_argument("--first-fake-user", type=non_negative_int, default=0, env_var="LOCUST_FIRST_FAKE_USER",
                       help="number of the first fake user to pick from")
    group.add_argument("--wait-min", type=non_negative_float, default=0.5, env_var="LOCUST_WAIT_MIN",
                       help="shortest think time between tasks, seconds")
    group.add_argument("--wait-max", type=non_negative_float, default=10.0, env_var="LOCUST_WAIT_MAX",
                       help="longest think time between tasks, seconds")
    group.add_argument("--login-path", default="/login/", env_var="LOCUST_LOGIN_PATH",
                       help="path of the Django login form")
    per_test(group.add_argument("--arrival-rate", type=non_negative_float, default=0.0, env_var="LOCUST_ARRIVAL_RATE",
                       help="open model: tasks per second over all processes, each started at its planned instant "
                            "by a free logged-in learner or dropped and counted (default 0: the closed model of "
                            "think times; docs/open-model.md)"))


@dataclass(frozen=True)
class Learners:
    """What each learner needs of the options."""

    first: int  # --first-fake-user
    count: int  # --fake-users
    wait_min: float  # think time between tasks, seconds
    wait_max: float
    login_path: str  # the Django login form

    def pick(self) -> int:
        """A fake user's number, at random."""
        return random.randrange(self.first, self.first + self.count)


@dataclass
class HttpRun:
    """This process's learners for the test (plumbing.run_state)."""

    learners: Learners | None = None


def _learners(o) -> Learners:
    return Learners(o.first_fake_user, o.fake_users, o.wait_min, o.wait_max, o.login_path)


@events.init.add_listener
def _check_options(environment, web_ui=None, **_kw) -> None:
    o = environment.parsed_options
    if o is None:  # a library user built the Environment without options
        return
    require(o.first_fake_user <= LAST_FAKE_USER - o.fake_users + 1,
            f"--first-fake-user {o.first_fake_user}: expected 0 … {LAST_FAKE_USER + 1 - o.fake_users}")
    require(o.wait_min <= o.wait_max, f"--wait-min {o.wait_min} / --wait-max {o.wait_max}: expected min <= max")
    run_state.of(environment, HttpRun).learners = _learners(o)
    # Once per process before the run (workers too: they send the load, and with --processes a
    # master that quit alone would leave its workers behind).
    if webui_run.web_ui_mode(environment, web_ui):
        # The host can be changed in the UI: checked when a test starts, an error there.
        webui_run.check_at_start(environment, check_http_host)
    elif o.host:
        check_http_host(o.host)


@events.test_start.add_listener
def _start(environment, **_kw) -> None:
    o = environment.parsed_options
    if o is not None:
        # A worker's options are the master's from its spawn message, which comes just before this.
        run_state.of(environment, HttpRun).learners = _learners(o)
        open_model.for_users(environment, OPEN_MODEL, o.arrival_rate)


def learners(environment) -> Learners:
    """The learners' settings for the current test."""
    return run_state.of(environment, HttpRun).learners


class SessionLost(ConnectionError):
    """A page redirected to the login form: the page was not served."""
