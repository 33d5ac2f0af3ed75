"""ralph: xAPI statements (event-routing-backends' own) POSTed in batches to an LRS such as Ralph.

No sampler: the LRS answers each POST, so a sent event is a stored one; the reference LRS is Ralph
itself (`python -m stack start ralph`), not a consumer of ours.
"""

from __future__ import annotations

import base64
import json
import os
import time
from dataclasses import dataclass, field

import gevent

import openedx_erb
from backends.base import Sender
from plumbing.options import OptionError, positive_float, positive_int
from plumbing.redaction import redact, remember, where

NAME = "ralph"
REFERENCE_CONSUMER = None


def add_arguments(group) -> None:
    group.add_argument("--ralph-url", default="http://127.0.0.1:8100", env_var="LOCUST_RALPH_URL",
                       help="ralph: the LRS base URL; statements go to <url>/xAPI/statements (default "
                            "http://127.0.0.1:8100)")
    group.add_argument("--ralph-username", default="loadtest", env_var="LOCUST_RALPH_USERNAME",
                       help="ralph: LRS basic-auth user (default %(default)s); the password comes from "
                            "LOCUST_RALPH_PASSWORD or --ralph-password-file")
    group.add_argument("--ralph-password-file", default="", env_var="LOCUST_RALPH_PASSWORD_FILE",
                       help="ralph: file holding the LRS password")
    group.add_argument("--ralph-batch-size", type=positive_int, default=100, env_var="LOCUST_RALPH_BATCH_SIZE",
                       help="ralph: statements per POST (default %(default)s, event-routing-backends' batch)")
    group.add_argument("--ralph-batch-interval", type=positive_float, default=1.0, env_var="LOCUST_RALPH_BATCH_INTERVAL",
                       help="ralph: seconds a partial batch waits before it is sent anyway (default %(default)g)")
    group.add_argument("--ralph-concurrency", type=positive_int, default=4, env_var="LOCUST_RALPH_CONCURRENCY",
                       help="ralph: POSTs in flight per process (default %(default)s)")


def ralph_password(o) -> str:
    """The LRS password: LOCUST_RALPH_PASSWORD, else --ralph-password-file (never an option value)."""
    if os.environ.get("LOCUST_RALPH_PASSWORD"):
        return os.environ["LOCUST_RALPH_PASSWORD"]
    if not o.ralph_password_file:
        return ""
    try:
        with open(o.ralph_password_file) as f:
            password = f.read().strip()
    except OSError as exc:
        raise OptionError(f"--ralph-password-file {o.ralph_password_file!r}: {exc.strerror}") from None
    remember(password)  # masked in anything logged from now on
    return password


def check_reachable(o) -> None:
    """GET /whoami with the credentials: unreachable and refused are different one-line errors."""
    import base64
    import urllib.error
    import urllib.request

    token = base64.b64encode(f"{o.ralph_username}:{ralph_password(o)}".encode()).decode()
    url = o.ralph_url.rstrip("/")
    req = urllib.request.Request(f"{url}/whoami", headers={"Authorization": f"Basic {token}"})
    try:
        with urllib.request.urlopen(req, timeout=5):
            return
    except urllib.error.HTTPError as exc:
        raise OptionError(f"ralph: LRS {redact(url)} refused user {o.ralph_username!r}: HTTP {exc.code} "
                          "(check --ralph-username and the password)") from None
    except (urllib.error.URLError, OSError, ValueError) as exc:
        reason = getattr(exc, "reason", exc)
        raise OptionError(f"ralph: LRS {redact(url)} unreachable: {reason}") from None


def sender(environment, o) -> RalphSender:
    return RalphSender(environment, NAME, url=o.ralph_url, username=o.ralph_username, password=ralph_password(o),
                       batch_size=o.ralph_batch_size, batch_interval=o.ralph_batch_interval,
                       concurrency=o.ralph_concurrency)


def entry(opts: dict) -> str:
    return where(opts.get("ralph_url"))


@dataclass
class RalphSender(Sender):
    """ralph: xAPI statements (event-routing-backends' own, openedx_erb) POSTed to an LRS in batches,
    "this many or this long" as event-routing-backends batches them, several POSTs in flight.

    Each event is an EVENT request timed from its creation to the LRS's answer for its batch
    (batching wait included: that is what the pipeline adds); each POST is also an LRS request.
    """

    url: str = "http://127.0.0.1:8100"
    username: str = ""
    password: str = ""
    batch_size: int = 100
    batch_interval: float = 1.0
    concurrency: int = 4
    _client: object = None
    _buffer: list = field(default_factory=list)
    _pool: object = None
    _timer: object = None
    _oldest: float = 0.0

    def __post_init__(self) -> None:
        import gevent.pool
        from geventhttpclient import URL, HTTPClient

        url = URL(self.url.rstrip("/"))
        self._path = url.path.rstrip("/") + "/xAPI/statements"
        self._client = HTTPClient.from_url(url, concurrency=self.concurrency, connection_timeout=10,
                                           network_timeout=60)
        token = base64.b64encode(f"{self.username}:{self.password}".encode()).decode()
        self._headers = {"Authorization": f"Basic {token}", "Content-Type": "application/json",
                         "X-Experience-API-Version": "1.0.3"}
        self._pool = gevent.pool.Pool(self.concurrency)
        openedx_erb.setup()
        self._timer = gevent.spawn(self._tick)

    def send(self, event: dict, planned: float | None = None) -> None:
        start, t0 = time.time(), time.perf_counter()
        try:
            statements = openedx_erb.statements(event)
        except openedx_erb.NotTransformable as exc:
            self._fire(event["name"], start, t0, 0, exc, planned)
            return
        if not self._buffer:
            self._oldest = time.monotonic()
        self._buffer.append((event["name"], start, t0, statements, planned))
        if len(self._buffer) >= self.batch_size:
            self._flush()

    def _tick(self) -> None:
        # The timer: a partial batch never waits for the next event longer than batch_interval.
        while True:
            gevent.sleep(min(self.batch_interval, 0.1))
            if self._buffer and time.monotonic() - self._oldest >= self.batch_interval:
                self._flush()

    def _flush(self) -> None:
        batch, self._buffer = self._buffer, []
        if batch:
            self._pool.spawn(self._post, batch)  # waits for a free slot: back-pressure on the users

    def _post(self, batch: list) -> None:
        body = json.dumps([s for b in batch for s in b[3]], separators=(",", ":")).encode()
        start, t0 = time.time(), time.perf_counter()
        exc: Exception | None = None
        try:
            resp = self._client.post(self._path, body=body, headers=self._headers)
            answer = resp.read()
            if resp.status_code != 200:
                exc = RuntimeError(f"LRS answered {resp.status_code}: {answer[:200].decode(errors='replace')}")
        except Exception as err:  # noqa: BLE001 - a failed POST fails its events, never the run
            exc = err
        self.environment.events.request.fire(request_type="LRS", name="POST /xAPI/statements",
                                             response_time=(time.perf_counter() - t0) * 1000,
                                             response_length=len(body), exception=exc, context={}, start_time=start)
        size = len(body) // len(batch)
        for name, ev_start, ev_t0, _statements, planned in batch:
            self._fire(name, ev_start, ev_t0, 0 if exc else size, exc, planned)

    def outstanding(self) -> int:
        return len(self._buffer) + len(self._pool)

    def close(self, timeout: float = 30.0) -> None:
        self._flush()
        self._pool.join(timeout=60)
        self._timer.kill(block=False)
        self._client.close()
