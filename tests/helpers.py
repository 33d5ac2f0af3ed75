"""Helpers for tests: polling, running Locust as a subprocess, loading site users."""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
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


def locust_command(args: list[str], via: list[str] | None = None, prefix: list[str] | None = None) -> list[str]:
    """`locust ARGS`, or with `via` the suite's command that runs Locust (e.g. ["loadtesting.run", "http"]:
    `python -m loadtesting.run http ARGS`); `prefix` goes first (e.g. `ip netns exec NS`)."""
    return [*(prefix or []), *([sys.executable, "-m", *via] if via else [LOCUST]), *args]


def locust_env(env: dict[str, str | None] | None) -> dict[str, str]:
    """The test's environment with `env` over it; a None value removes that variable."""
    merged = {**os.environ, **(env or {})}
    return {k: v for k, v in merged.items() if v is not None}


def start_locust(args: list[str], *, env: dict[str, str | None] | None = None, cwd: Path = REPO,
                 via: list[str] | None = None, prefix: list[str] | None = None, **popen) -> subprocess.Popen:
    """Start `locust ARGS` (or `via` it, after `prefix`: see locust_command) in its own process group
    (so a test can end it with its workers); output merged into one text pipe unless `popen` says
    otherwise (stdout=, stderr=, text=)."""
    options = {"stdout": subprocess.PIPE, "stderr": subprocess.STDOUT, "text": True, "start_new_session": True,
               **popen}
    if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
        # A suite started in the background (`cmd &`) ignores SIGINT, and a child would inherit that:
        # Locust then never sees a Ctrl-C. Give it the terminal's default, as a user's shell does.
        options.setdefault("preexec_fn", _default_sigint)
    return subprocess.Popen(locust_command(args, via, prefix), cwd=cwd, env=locust_env(env), **options)


def _default_sigint() -> None:
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def run_locust(args: list[str], *, env: dict[str, str | None] | None = None, timeout: float = 180,
               cwd: Path = REPO, via: list[str] | None = None) -> subprocess.CompletedProcess:
    """Run `locust ARGS` (or `via` it, see locust_command) to completion (headless runs end by
    --run-time); stdout and stderr captured as text.

    A run still going after `timeout` is killed with its worker processes (its own process group)
    and fails the test with the end of what it printed, so a hang says where it hung."""

    if "--processes" in args and "--master-bind-port" not in args:
        # Locust's default master port (5557) is one per machine: two runs at once (another test
        # run, a bench) would swap workers. The forked workers connect to --master-port.
        port = str(free_port())
        args = [*args, "--master-bind-port", port, "--master-port", port]
    proc = start_locust(args, env=env, cwd=cwd, via=via, stderr=subprocess.PIPE)
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        out, err = proc.communicate()
        # Its log lines, not the stats tables it prints every 2 s, say where it hung.
        log = [line for line in (err or "").splitlines()
               if any(mark in line for mark in ("/INFO/", "/WARNING/", "/ERROR/", "Traceback", "Error"))]
        raise AssertionError(f"{' '.join(proc.args)} still running after {timeout} s; its log:\n"
                             + "\n".join(log[-40:]) + f"\nits output ended with:\n{(out or '')[-1500:]}") from None
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)


# Locust's own parser with the locustfile loaded, as `locust` builds it; prints the options as JSON.
_PARSE = """
import json, sys
from locust.argument_parser import get_parser, parse_locustfile_option
from locust.main import get_locustfiles_locally, merge_locustfiles_content
argv = json.loads(sys.argv[1])
merge_locustfiles_content(get_locustfiles_locally(parse_locustfile_option(argv)))
print(json.dumps(vars(get_parser().parse_args(argv)), default=str))
"""


@contextlib.contextmanager
def locust_until(args: list[str], *, env: dict[str, str | None] | None = None):
    """A run (start_locust, its stderr kept) that the test ends with SIGTERM once it has seen what it
    waits for, however long this machine takes to get there: `with locust_until(args) as run:` ...
    `run.end()` -> (exit code, stderr). Left running (a failed wait), it is killed with its workers."""

    proc = start_locust(args, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)

    def end(timeout: float = 120) -> tuple[int, str]:
        proc.send_signal(signal.SIGTERM)
        err = proc.communicate(timeout=timeout)[1]
        return proc.returncode, err

    proc.end = end
    try:
        yield proc
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def parse_locust(args: list[str], *, env: dict[str, str | None] | None = None,
                 timeout: float = 120) -> subprocess.CompletedProcess:
    """What `locust ARGS` would run with, without running it: its options (locustfile's included,
    environment and config files read) as JSON on stdout, or exit 2 with argparse's error. In a fresh
    interpreter: importing locust here would gevent-patch pytest."""
    return subprocess.run([sys.executable, "-c", _PARSE, json.dumps(args)], cwd=REPO, capture_output=True,
                          text=True, env=locust_env(env), timeout=timeout)


def load_site_users(site: Endpoint, count: int) -> None:
    """Run `manage.py loadtestingdata` against the site's database."""
    env = {**os.environ, "LAMPISITE_PROFILE": site.extra["profile"], "LAMPISITE_DATA_DIR": site.extra["data_dir"]}
    cmd = [sys.executable, str(REPO / "targets" / "lampisite" / "manage.py"), "loadtestingdata", "--count", str(count)]
    subprocess.run(cmd, env=env, check=True, capture_output=True, timeout=300)




_STATS_LINE = re.compile(r"^\s*$|^(Type\s|-{8}|Response time percentiles)|\s\|\s|^\s+Aggregated|(\s+[\d.]+){5,}\s*$")


def log_of(text: str | None, limit: int = 4000) -> str:
    """What a Locust run printed, without the stats tables it prints every few seconds: its log
    lines and tracebacks (the end of them, `limit` characters), which say why it ended as it did."""
    lines = [line for line in (text or "").splitlines() if not _STATS_LINE.search(line)]
    return "\n".join(lines)[-limit:]
