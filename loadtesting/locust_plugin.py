"""The results workflow inside Locust; locustfiles get it with `import loadtesting.locust_plugin`.

- ``--capacity-search`` replaces the user count with `loadtesting.capacity.CapacitySearch`.
- While a run lasts in a run folder (``python -m loadtesting.run``), sysstat records the
  machine's activity into ``sar.data`` there (``--no-sar`` turns it off).
- Phases are marked by the capacity search, or by hand from the web UI:
  ``POST /phases/start?name=peak``, ``POST /phases/end?name=peak``, ``GET /phases``.
Phases and the capacity result are also stored with the run in ClickHouse (load_test_runs rows).
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from locust import events
from locust.runners import WorkerRunner

import loadtesting.generator_hosts  # noqa: F401  - sar on every worker host of a distributed run
import monitors.clocks  # noqa: F401  - worker clock offsets from the master, for every locustfile
import monitors.final_reports  # noqa: F401  - a quitting master gets its workers' last figures
from lifecycle import end
from lifecycle.end import add_run_extra, record_run_event
from loadtesting import capacity, phases, rate_capacity, run, sar
from loadtesting.capacity_shape import CapacitySearch
from loadtesting.rate_capacity_shape import RateSearch, RateTarget
from monitors.locust_plugin import store_target
from monitors.planned import planned_stats
from plumbing import run_state, settings

log = logging.getLogger("loadtesting")


@events.init_command_line_parser.add_listener
def _options(parser) -> None:
    capacity.add_arguments(parser)
    rate_capacity.add_arguments(parser)
    sar.add_arguments(parser)


def results_dir() -> Path | None:
    """The run folder (LOCUST_RESULTS_DIR, set by loadtesting.run), if any."""
    value = settings.RESULTS_DIR.resolve()
    return Path(value) if value else None


# Set at import by a locustfile whose --capacity-search steps an arrival rate (generates_rate()).
_RATE_GENERATOR = {"on": False}


def generates_rate() -> None:
    """Called at import by an open-model locustfile (tracking, kafka): its --capacity-search searches
    the arrival rate (use_rate_search at init), not the user count."""
    _RATE_GENERATOR["on"] = True


@events.init.add_listener
def _init(environment, runner=None, web_ui=None, **_kw) -> None:
    o = environment.parsed_options
    if o is None:
        return
    # Each value was checked by its argparse type; the user search checks how they fit together.
    search = capacity.UserSearchSettings.from_options(o) if capacity.searching(o) and not _RATE_GENERATOR["on"] \
        else None
    out = results_dir()
    target = store_target(o)
    if out is not None and not isinstance(runner, WorkerRunner) and target is not None:
        # The effective options (config files, LOCUST_* variables, command line): the report reads these.
        run.record_monitor_target(out, *target)
    if search is not None and not isinstance(runner, WorkerRunner):
        shape = CapacitySearch(
            environment, search, results_dir,
            on_phase=lambda p: record_run_event(environment, "phase", asdict(p)),
            on_done=lambda result: _capacity_done(environment, result))
        shape.runner = runner
        environment.shape_class = shape
    if web_ui is not None:
        _phase_routes(environment, web_ui)


def _capacity_done(environment, result: dict) -> None:
    summary = {k: v for k, v in result.items() if k not in ("steps", "phases")}
    add_run_extra(environment, capacity=summary)
    if environment.process_exit_code is None:
        environment.process_exit_code = 0  # failures were the search's probe, not a failed run
    record_run_event(environment, "capacity", result)
    for step in result.get("steps", []) if "sustained_per_second" in result else []:
        record_run_event(environment, "capacity_step", step)  # one row per step, as phases have


def use_rate_search(environment, target: RateTarget) -> None:
    """From an open-model locustfile's init listener (after this plugin's): with --capacity-search,
    search the arrival rate through `target` instead of the user count."""
    o = environment.parsed_options
    if o is None or not capacity.searching(o) or isinstance(environment.runner, WorkerRunner):
        return
    shape = RateSearch(environment, target, rate_capacity.RateSearchSettings.from_options(o), results_dir,
                       on_phase=lambda p: record_run_event(environment, "phase", asdict(p)),
                       on_done=lambda result: _capacity_done(environment, result))
    shape.runner = environment.runner
    environment.shape_class = shape


@events.test_stopping.add_listener
def _search_stopping(environment, **_kw) -> None:
    """A test stopped before its capacity search ended (the web UI's Stop, --run-time, a signal): the
    search ends with its partial result, in this test's run folder. (A search that ended by itself
    already has its result.) Fired before the users stop and before the run folder is completed."""
    shape = environment.shape_class
    if isinstance(shape, CapacitySearch | RateSearch) and not isinstance(environment.runner, WorkerRunner):
        shape.stop()


@events.test_start.add_listener
def _warn_long_ramp(environment, **_kw) -> None:
    o = environment.parsed_options
    if o is None or isinstance(environment.runner, WorkerRunner) or environment.shape_class is not None:
        return
    warning = run.ramp_warning(o.num_users, o.spawn_rate, o.run_time)
    if warning:
        log.warning(warning)


# -- sar ------------------------------------------------------------------------------------
@dataclass
class SarRecording:
    """This Locust process's sar recording (plumbing.run_state): one across tests from the web UI."""

    process: object = None  # the sadc subprocess


@events.test_start.add_listener
def _start_sar(environment, **_kw) -> None:
    every = sar.interval(environment.parsed_options)
    out = results_dir()
    if every is None or out is None or isinstance(environment.runner, WorkerRunner):
        return
    rec = run_state.of(environment, SarRecording)
    if rec.process is not None:
        return  # one recording per Locust process, across tests started from the web UI
    try:
        rec.process = sar.start(out / "sar.data", every)
        log.info("recording system activity every %d s into %s", every, out / "sar.data")
    except sar.SarError as exc:
        log.warning("no sar recording: %s", exc)


@end.run_ending.add_listener
def _stop_sar(environment, **_kw) -> None:
    stop_sar(environment)


def stop_sar(environment) -> None:
    """End the sar recording into the run folder (at quitting; after each test started from the
    web UI, whose next test records into its own folder)."""
    rec = run_state.of(environment, SarRecording)
    proc, rec.process = rec.process, None
    out = results_dir()
    if proc is not None:
        sar.stop(proc, path=out / "sar.data" if out else None, covering=time.time(),
                 interval=sar.interval(environment.parsed_options) or 1)


@end.run_measured.add_listener
def write_final_stats(environment, **_kw) -> None:
    """Write the run's final figures to ``stats.json`` (the CSV files get them too: lifecycle.final_csv),
    percentiles capped at the slowest request and, in the open model, timed from the planned start."""
    out = results_dir()
    if out is None or isinstance(environment.runner, WorkerRunner) or not out.is_dir():
        return
    rows = _final_rows(environment.stats)
    planned = _final_rows(planned_stats(environment)) if planned_stats(environment).total.num_requests else []
    failures = [{"method": e.method, "name": e.name, "error": e.error if isinstance(e.error, str) else repr(e.error),
                 "occurrences": e.occurrences} for e in environment.stats.errors.values()]
    final = {"requests": rows, "failures": failures}
    if planned:
        final["from_planned_start"] = planned  # open-model requests timed from their planned start
    (out / "stats.json").write_text(json.dumps(final, indent=1, default=str))


def _final_rows(stats) -> list[dict]:
    """Per request name and Aggregated: Locust's final figures, percentiles at most the maximum
    (Locust's buckets round up to 5 %, so its own percentile can exceed the slowest request, locust#1563)."""
    rows = []
    for entry in [*sorted(stats.entries.values(), key=lambda e: (e.method or "", e.name)), stats.total]:
        top = entry.max_response_time or 0
        timed = entry.num_requests - entry.num_none_requests
        pct = {p: min(entry.get_response_time_percentile(p), top) if timed else 0 for p in (0.5, 0.95, 0.99)}
        rows.append({"type": entry.method or "", "name": entry.name, "requests": entry.num_requests,
                     "failures": entry.num_failures, "avg_ms": entry.avg_response_time,
                     "p50_ms": pct[0.5], "p95_ms": pct[0.95], "p99_ms": pct[0.99], "max_ms": top,
                     "rps": entry.total_rps})
    return rows


# -- phases by hand ------------------------------------------------------------------------------
def _phase_routes(environment, web_ui) -> None:
    from flask import jsonify, request

    manual: list[dict] = []  # marks when there is no run folder

    @web_ui.app.route("/phases", methods=["GET"])
    @web_ui.auth_required_if_enabled
    def list_phases():
        out = results_dir()
        found = phases.read(out) if out else phases.from_records(manual)
        return jsonify([asdict(p) for p in found])

    @web_ui.app.route("/phases/<action>", methods=["POST"])
    @web_ui.auth_required_if_enabled
    def mark_phase(action: str):
        name = request.values.get("name", "")
        try:
            rec = phases.mark(results_dir(), action, name)
        except ValueError as exc:
            return jsonify({"error": str(exc)}), 400
        if results_dir() is None:
            manual.append(rec)
        record_run_event(environment, "phase_mark", rec)
        return jsonify(rec)


# Each test started from the web UI gets its own run folder (that module uses the functions above).
from loadtesting import webui_run  # noqa: E402, F401
