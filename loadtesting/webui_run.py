"""Tests started from Locust's web UI get what a headless run gets: a run folder each.

In web-UI mode (a web UI, not --headless; the master or a local runner; no run folder given by the
caller in LOCUST_RESULTS_DIR) every Start…Stop of one Locust process is a run of its own: ``<--results>/<run-id>/`` with ``run.json``, the monitor's
``samples.jsonl`` and ``request_stats.jsonl``, ``sar.data``, ``stats.json``, Locust's
``report.html`` and ``<kind>-results.md`` with its charts, written once the test has stopped and
its pipeline drained (at most --drain-timeout). Phases marked from the UI go into that folder.

Before each start (the UI's POST /swarm) the per-test options of the start form are checked
(plumbing.web_options) and so is the host (locustfiles register their check with
`check_at_start`): a bad value or a host that is down is an error in the UI, and the process
stays up for the user to correct it. A start while the previous test still finishes is refused
with a message saying so (its folder would otherwise get the new test's files).

Only Locust's public hooks are used (init, test_start, test_stop, quitting, Flask's request
hooks on ``web_ui.app``), and the other modules' public functions.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import gevent
from locust import events
from locust.runners import STATE_RUNNING, STATE_SPAWNING, WorkerRunner

from lifecycle import end
from lifecycle import run as identity
from loadtesting import run
from loadtesting.locust_plugin import stop_sar
from monitors.locust_plugin import drain_timeout, store_target
from plumbing import run_state, settings, web_options
from plumbing.redaction import redact_args, redact_options, redact_text
from plumbing.versions import versions

log = logging.getLogger("loadtesting")


@events.init_command_line_parser.add_listener
def _options(parser) -> None:
    g = parser.add_argument_group("run folders")
    g.add_argument("--results", default=settings.RESULTS.default, env_var=settings.RESULTS.env,
                   help="web UI: each test's run folder goes here, <results>/<run-id>/ (default results/)")


@dataclass
class WebRun:
    """This process's web-UI tests (plumbing.run_state)."""

    web: bool = False  # web-UI mode: the process outlives its tests
    active: bool = False  # and each test gets its run folder here
    root: Path | None = None
    folder: Path | None = None  # the current (or last) test's run folder
    run_id: str = ""
    prepared: bool = False  # by the start request, for the test_start to come
    completed: bool = True
    completing: object = None  # the greenlet writing the last test's results
    started: str = ""
    t0: float = 0.0
    checks: list[Callable[[str], None]] = field(default_factory=list)
    interrupted: str = ""  # the signal that ended the process while the test ran


def check_at_start(environment, check: Callable[[str], None]) -> None:
    """In web-UI mode, `check(host)` runs before each test starts (with the host of the start form);
    the OptionError it raises is shown in the UI and the test does not start."""
    run_state.of(environment, WebRun).checks.append(check)


def web_ui_mode(environment, web_ui) -> bool:
    o = environment.parsed_options
    return (web_ui is not None and o is not None and not o.headless
            and not isinstance(environment.runner, WorkerRunner))


@events.init.add_listener
def _init(environment, web_ui=None, **_kw) -> None:
    if not web_ui_mode(environment, web_ui):
        return
    state = run_state.of(environment, WebRun)
    state.web = True
    if settings.RESULTS_DIR.resolve():
        return  # the caller gave the one run folder (LOCUST_RESULTS_DIR: loadtesting.run, a script)
    state.active = True
    state.root = Path(environment.parsed_options.results).resolve()
    if environment.parsed_options.autostart:
        # The first test starts without the start form: its id and folder now, before any test_start
        # listener (the run's start takes the reserved id whichever listener runs first).
        _prepare(environment)
    from flask import jsonify, request

    def is_swarm() -> bool:
        return request.method == "POST" and request.path.endswith("/swarm")

    def is_start() -> bool:  # else: a new user count for the running test
        runner = environment.runner
        return is_swarm() and runner is not None and runner.state not in (STATE_SPAWNING, STATE_RUNNING)

    @web_ui.app.before_request
    def _before_start():
        if not is_swarm():
            return None
        if not is_start():
            if environment.shape_class is not None:
                # Locust would answer "Swarming started" and change nothing (a shape test cannot be edited).
                return jsonify({"success": False, "host": environment.host, "message": (
                    f"error: a {type(environment.shape_class).__name__} test (--capacity-search or a load shape) sets "
                    "its own users and rate while it runs: stop it, then start again with new values")})
            bad = web_options.check_form(request.form)  # Locust would fail on a value it cannot convert
            return jsonify({"success": False, "message": bad, "host": environment.host}) if bad else None
        message = _refusal(environment, request.form)
        if message:
            log.error(message)
            return jsonify({"success": False, "message": message, "host": environment.host})
        _prepare(environment)
        return None

    @web_ui.app.after_request
    def _after_start(response):
        if not (state.prepared and request.path.endswith("/swarm") and response.is_json):
            return response
        body = response.get_json(silent=True) or {}
        if not body.get("success"):
            _unprepare(environment)  # Locust refused the start (e.g. a bad user count): no run
        else:  # the new test's run id and folder, for scripts driving the UI
            body.update(run_id=state.run_id, results=str(state.folder))
            response.set_data(json.dumps(body))
        return response


def _refusal(environment, form) -> str | None:
    state = run_state.of(environment, WebRun)
    if state.completing is not None and not state.completing.dead:
        return (f"error: the previous test ({state.run_id}) is still finishing: its pipeline drains for at most "
                f"{drain_timeout(environment):g} s (--drain-timeout), then its results are written; start again then")
    bad = web_options.check_form(form)
    if bad:
        return bad
    host = form.get("host") or environment.host or ""
    for check in state.checks:
        try:
            if host:
                check(host)
        except SystemExit as exc:  # plumbing.options.OptionError: one line
            return redact_text(str(exc.code))
    return None


def _prepare(environment) -> None:
    """A new run id and run folder for the test about to start."""
    state = run_state.of(environment, WebRun)
    o = environment.parsed_options
    rid = identity.reserve(environment)  # the run's start takes it (lifecycle.run)
    folder = state.root / rid
    folder.mkdir(parents=True, exist_ok=True)
    state.folder, state.run_id, state.prepared, state.completed = folder, rid, True, False
    state.started, state.t0 = datetime.now(UTC).isoformat(timespec="seconds"), time.monotonic()
    meta = {"run_id": rid, "kind": Path(o.locustfile or "locust").stem,
            "command": redact_args(["locust", *sys.argv[1:]]),
            "started": state.started, "versions": versions(), "web_ui": True}
    _write_json(folder / "run.json", meta)
    target = store_target(o)
    if target is not None:
        run.record_monitor_target(folder, *target)
    # The run folder of the suite's modules (settings.RESULTS_DIR), as loadtesting.run sets it.
    os.environ[settings.RESULTS_DIR.env] = str(folder)


def _unprepare(environment) -> None:
    state = run_state.of(environment, WebRun)
    if state.folder is not None:
        shutil.rmtree(state.folder, ignore_errors=True)
    os.environ.pop(settings.RESULTS_DIR.env, None)
    state.prepared, state.completed, state.folder = False, True, None


@events.test_start.add_listener
def _test_start(environment, **_kw) -> None:
    state = run_state.of(environment, WebRun)
    if not state.active:
        return
    if not state.prepared:  # started without the start form (--autostart): the folder now
        _prepare(environment)
    state.prepared = False
    environment.process_exit_code = None  # this test's verdict, not the previous one's
    o = environment.parsed_options
    web_options.coerce(o)
    # What the start form set for this test (users, rate, host and the per-test options), in its run.json.
    path = state.folder / "run.json"
    meta = json.loads(path.read_text())
    meta["web_ui_form"] = redact_options({"host": environment.host, "users": o.num_users, "spawn_rate": o.spawn_rate,
                                          **{d: getattr(o, d, None) for d in web_options.SHOWN}})
    _write_json(path, meta)


@events.test_stop.add_listener
def _test_stop(environment, **_kw) -> None:
    state = run_state.of(environment, WebRun)
    if state.active and not state.completed and (state.completing is None or state.completing.dead):
        state.completing = gevent.spawn(_complete, environment)


@events.quitting.add_listener
def _quitting(environment, **_kw) -> None:
    """Registered after the monitor's: runs before it (Locust fires quitting in reverse), so a test
    still running or finishing gets its results before the process ends."""
    state = run_state.of(environment, WebRun)
    if not state.active or state.completed:
        return
    if state.completing is None or state.completing.dead:
        state.completing = gevent.getcurrent()
        _complete(environment)
    else:
        state.completing.join()


def _complete(environment) -> None:
    """After the stop: drain and checks (the monitor), stats, sar, Locust's report, run.json, the report."""
    state = run_state.of(environment, WebRun)
    folder, rid = state.folder, state.run_id
    try:
        # The run's end in its one order (drain, last measurements, stats.json, checks, end rows);
        # a signal while the test ran makes it interrupted (130/143).
        code = end.end(environment)
        state.interrupted = end.interrupted(environment)
        stop_sar(environment)
        from locust.html import get_html_report

        (folder / "report.html").write_text(get_html_report(environment, show_download_link=False))
        meta = json.loads((folder / "run.json").read_text())
        meta.update(ended=datetime.now(UTC).isoformat(timespec="seconds"),
                    duration_s=round(time.monotonic() - state.t0, 1), exit_code=code,
                    interrupted=bool(state.interrupted))
        _write_json(folder / "run.json", meta)
        _report(environment, rid)
        # The last write: a script waiting for this test's results polls for it.
        meta = json.loads((folder / "run.json").read_text())
        meta["results_written"] = datetime.now(UTC).isoformat(timespec="seconds")
        _write_json(folder / "run.json", meta)
        log.info("results of run %s (exit code %s): %s/", rid, code, folder)
    except Exception:  # noqa: BLE001 - the process (and the next test) lives on
        log.exception("run %s: writing its results failed", rid)
    finally:
        state.completed = True


def _write_json(path: Path, data: dict) -> None:
    """Replace `path` at once: a script polling the run folder never reads it half written."""
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(data, indent=1, default=str))
    os.replace(tmp, path)


def _report(environment, rid: str) -> None:
    """`python -m loadtesting.report` in a subprocess: drawing charts would hold the gevent loop."""
    env = dict(os.environ)
    target = store_target(environment.parsed_options)
    if target is not None:  # the password, if in the URL, travels in the environment only
        env.update({settings.CLICKHOUSE_URL.env: target[0], settings.MONITOR_DATABASE.env: target[1]})
    done = subprocess.run([sys.executable, "-m", "loadtesting.report", rid, "--results", str(run_state.of(
        environment, WebRun).root)], env=env, cwd=run.REPO, capture_output=True, text=True, check=False)
    for line in (done.stdout + done.stderr).splitlines():
        log.info("report: %s", redact_text(line))
