"""HTTP learners of the LAMPI site: log in as a random fake user, then browse.

    locust -f locustfiles/http.py --config conf/http.conf            # web UI
    locust -f locustfiles/http.py --headless --users 100 --spawn-rate 10 --run-time 60s

Users `user_000000`… come from `manage.py loadtestingdata`; the password is the username
reversed and user n owns device `'%x' % (0x1e0000000000 + n)`.
"""

from __future__ import annotations

import functools
import random
import re
from urllib.parse import urlsplit

from locust import FastHttpUser, events, task

import loadtesting.locust_plugin  # noqa: F401  - capacity search, sar capture, phases
import monitors.locust_plugin  # noqa: F401  - pipeline monitor, ClickHouse sink, thresholds
from generators import open_model
from generators.common import check_http_host
from generators.lampi_data import credentials
from loadtesting import webui_run
from plumbing.options import non_negative_float, positive_int, require
from plumbing.web_options import per_test

_CSRF_INPUT = re.compile(rb'name="csrfmiddlewaretoken" value="([^"]+)"')


@events.init_command_line_parser.add_listener
def _options(parser) -> None:
    group = parser.add_argument_group("LAMPI HTTP learners")
    group.add_argument("--fake-users", type=positive_int, default=10_000, env_var="LOCUST_FAKE_USERS",
                       help="how many fake users exist (user_000000 …); each learner picks one at random")
    group.add_argument("--first-fake-user", type=int, default=0, env_var="LOCUST_FIRST_FAKE_USER",
                       help="number of the first fake user to pick from")
    group.add_argument("--wait-min", type=float, default=0.5, env_var="LOCUST_WAIT_MIN",
                       help="shortest think time between tasks, seconds")
    group.add_argument("--wait-max", type=float, default=10.0, env_var="LOCUST_WAIT_MAX",
                       help="longest think time between tasks, seconds")
    group.add_argument("--login-path", default="/login/", env_var="LOCUST_LOGIN_PATH",
                       help="path of the Django login form")
    per_test(group.add_argument("--arrival-rate", type=non_negative_float, default=0.0, env_var="LOCUST_ARRIVAL_RATE",
                       help="open model: tasks per second over all processes, each started at its planned instant "
                            "by a free logged-in learner or dropped and counted (default 0: the closed model of "
                            "think times; docs/open-model.md)"))


@events.init.add_listener
def _check_options(environment, web_ui=None, **_kw) -> None:
    o = environment.parsed_options
    if o is None:  # a library user built the Environment without options
        return
    require(0 <= o.first_fake_user <= 999_999 - o.fake_users + 1,
            f"--first-fake-user {o.first_fake_user}: expected 0 … {1_000_000 - o.fake_users}")
    require(0 <= o.wait_min <= o.wait_max,
            f"--wait-min {o.wait_min} / --wait-max {o.wait_max}: expected 0 <= min <= max")
    # Once per process before the run (workers too: they send the load, and with --processes a
    # master that quit alone would leave its workers behind).
    if webui_run.web_ui_mode(environment, web_ui):
        # The host can be changed in the UI: checked when a test starts, an error there.
        webui_run.check_at_start(environment, check_http_host)
    elif o.host:
        check_http_host(o.host)


OPEN_MODEL = "learner tasks"  # the DROPPED row's name


@events.test_start.add_listener
def _open_model(environment, **_kw) -> None:
    o = environment.parsed_options
    if o is not None:
        open_model.for_users(environment, OPEN_MODEL, o.arrival_rate)


class SessionLost(ConnectionError):
    """A page redirected to the login form: the page was not served."""


class Learner(FastHttpUser):
    """One person with a LAMPI: weights 100/80/75 for `/`, `/lampi`, their device page.

    Redirects are followed as FastHttpUser does by default (`/lampi` costs Django's APPEND_SLASH
    301 to `/lampi/`, as on a course site); the final status decides (>= 400 fails), except that
    a redirect to the login form is a failure, "session lost", and the learner logs in again.
    """

    def wait_time(self) -> float:
        o = self.environment.parsed_options
        return random.uniform(o.wait_min, o.wait_max)

    def on_start(self) -> None:
        o = self.environment.parsed_options
        # Per-request work is kept small (bench/http.py measures it against a bare FastHttpUser):
        # the think time and the device page's path are settled once per learner.
        self.wait_time = functools.partial(random.uniform, o.wait_min, o.wait_max)
        n = random.randrange(o.first_fake_user, o.first_fake_user + o.fake_users)
        self.username, self.password, self.device_id = credentials(n)
        self.device_path = f"/lampi/device/{self.device_id}"
        self.login_path = urlsplit(o.login_path).path.rstrip("/")
        self.logged_in = self.login()
        open_model.attach(self, open_model.named(self.environment, OPEN_MODEL))  # closed model: no-op

    def login(self) -> bool:
        """Log in through the CSRF-protected form; a failure is recorded and retried next task."""
        path = self.environment.parsed_options.login_path
        with self.client.get(f"{path}?next=/", name=path, catch_response=True) as resp:
            match = _CSRF_INPUT.search(resp.content or b"")
            if resp.status_code != 200 or not match:
                resp.failure(f"login form: status {resp.status_code}, no CSRF token")
                return False
        form = {
            "csrfmiddlewaretoken": match.group(1).decode(),
            "username": self.username,
            "password": self.password,
            "next": "/",
        }
        with self.client.post(path, data=form, name=f"{path} (POST)", allow_redirects=False,
                              headers={"Referer": self.host + path}, catch_response=True) as resp:
            # Django answers a good login with a redirect to `next`, a bad one with the form again.
            if resp.status_code != 302:
                resp.failure(f"login as {self.username} failed: status {resp.status_code}")
                return False
        return True

    def _get(self, path: str, name: str) -> None:
        if not self.logged_in:
            self.logged_in = self.login()
            if not self.logged_in:
                return
        with self.client.get(path, name=name, catch_response=True) as resp:
            # `url` is where the redirects ended (geventhttpclient redirects the request in place);
            # `history` would say the same but is not kept on catch_response's response object.
            if urlsplit(resp.url or "").path.rstrip("/") == self.login_path:
                resp.failure(SessionLost("session lost: redirected to the login page"))
                self.logged_in = False  # log in again before the next task
            # Otherwise Locust judges the final status on exit: >= 400 or no answer fails.

    @task(100)
    def index(self) -> None:
        self._get("/", "/")

    @task(80)
    def lampi(self) -> None:
        self._get("/lampi", "/lampi")

    @task(75)
    def device(self) -> None:
        self._get(self.device_path, "/lampi/device/<device_id>")
