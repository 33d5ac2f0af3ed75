"""Helpers for tests: polling, running Locust as a subprocess, loading site users."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

from stack import Endpoint, free_port

REPO = Path(__file__).resolve().parent.parent
LOCUST = str(Path(sys.executable).with_name("locust"))


def wait_for(cond: Callable[[], object], timeout: float = 30.0, what: str = "condition", interval: float = 0.05,
             on_timeout: Callable[[], str] | None = None):
    """Poll `cond` until truthy and return its value; fail the test naming `what` (and what
    `on_timeout` tells, e.g. a process's last output) on timeout."""
    deadline = time.monotonic() + timeout
    while True:
        value = cond()
        if value:
            return value
        if time.monotonic() > deadline:
            detail = f"\n{on_timeout()}" if on_timeout else ""
            raise AssertionError(f"timed out after {timeout} s waiting for {what} (last value: {value!r}){detail}")
        time.sleep(interval)


def start_locust(args: list[str], *, env: dict[str, str] | None = None, cwd: Path = REPO,
                 **popen) -> subprocess.Popen:
    """Start `locust ARGS` in its own process group (so a test can end it with its workers); output
    merged into one text pipe unless `popen` says otherwise (stdout=, stderr=, text=)."""
    options = {"stdout": subprocess.PIPE, "stderr": subprocess.STDOUT, "text": True, "start_new_session": True,
               **popen}
    return subprocess.Popen([LOCUST, *args], cwd=cwd, env={**os.environ, **(env or {})}, **options)


def run_locust(args: list[str], *, env: dict[str, str] | None = None, timeout: float = 180,
               cwd: Path = REPO) -> subprocess.CompletedProcess:
    """Run `locust ARGS` to completion (headless runs end by --run-time); output captured as text.

    A run still going after `timeout` is killed with its worker processes (its own process group)
    and fails the test with the end of what it printed, so a hang says where it hung."""
    import signal

    if "--processes" in args and "--master-bind-port" not in args:
        # Locust's default master port (5557) is one per machine: two runs at once (another test
        # run, a bench) would swap workers. The forked workers connect to --master-port.
        port = str(free_port())
        args = [*args, "--master-bind-port", port, "--master-port", port]
    proc = start_locust(args, env=env, cwd=cwd, stderr=subprocess.PIPE)
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        out, err = proc.communicate()
        raise AssertionError(f"locust {' '.join(args)} still running after {timeout} s; its output ended with:\n"
                             f"{(out or '')[-1500:]}\n{(err or '')[-3000:]}") from None
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)


def load_site_users(site: Endpoint, count: int) -> None:
    """Run `manage.py loadtestingdata` against the site's database."""
    env = {**os.environ, "LAMPISITE_PROFILE": site.extra["profile"], "LAMPISITE_DATA_DIR": site.extra["data_dir"]}
    cmd = [sys.executable, str(REPO / "targets" / "lampisite" / "manage.py"), "loadtestingdata", "--count", str(count)]
    subprocess.run(cmd, env=env, check=True, capture_output=True, timeout=300)


