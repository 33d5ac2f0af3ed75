"""HTTP learners of the LAMPI site: log in as a random fake user, then browse.

    locust -f locustfiles/http.py --config conf/http.conf            # web UI
    locust -f locustfiles/http.py --headless --users 100 --spawn-rate 10 --run-time 60s

Users `user_000000`… come from `manage.py loadtestingdata`; the password is the username
reversed and user n owns device `'%x' % (0x1e0000000000 + n)`. The options and their checks are
in generators.http_learners (docs/http.md).
"""

from __future__ import annotations

import functools
import random
import re
from urllib.parse import urlsplit

from locust import FastHttpUser, task
from locust.exception import StopUser

import loadtesting.locust_plugin  # noqa: F401  - capacity search, sar capture, phases
import monitors.locust_plugin  # noqa: F401  - pipeline monitor, ClickHouse sink, thresholds
from generators import http_learners, open_model
from generators.http_learners import SessionLost
from generators.lampi_data import credentials


class Learner(FastHttpUser):
    """One person with a LAMPI: weights 100/80/75 for `/`, `/lampi`, their device page.

    Redirects are followed as FastHttpUser does by default (`/lampi` costs Django's APPEND_SLASH
    301 to `/lampi/`, as on a course site); the final status decides (>= 400 fails), except that
    a redirect to the login form is a failure, "session lost", and the learner logs in again.
    """

    csrf_input = re.compile(rb'name="csrfmiddlewaretoken" value="([^"]+)"')

    def wait_time(self) -> float:
        s = http_learners.learners(self.environment)
        return random.uniform(s.wait_min, s.wait_max)

    def on_start(self) -> None:
        s = http_learners.learners(self.environment)
        # Per-request work is kept small (bench/http.py measures it against a bare FastHttpUser):
        # the think time and the device page's path are settled once per learner.
        self.wait_time = functools.partial(random.uniform, s.wait_min, s.wait_max)
        self.username, self.password, self.device_id = credentials(s.pick())
        self.device_path = f"/lampi/device/{self.device_id}"
        self.form_path = s.login_path
        self.login_path = urlsplit(s.login_path).path.rstrip("/")
        self.logged_in = self.login()
        self.model = open_model.named(self.environment, http_learners.OPEN_MODEL)  # None in the closed model
        open_model.attach(self, self.model)  # closed model: no-op

    def login(self) -> bool:
        """Log in through the CSRF-protected form; a failure is recorded and retried next task."""
        path = self.form_path
        with self.client.get(f"{path}?next=/", name=path, catch_response=True) as resp:
            match = self.csrf_input.search(resp.content or b"")
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
        if self.model is not None and open_model.begin(self) is None:
            raise StopUser()  # the run stopped before this task began: its instant is not in the window
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
