"""Headless run with a results folder: ``python -m loadtesting.run KIND [locust options]``.

KIND is a locustfile name (http, mqtt, kafka, tracking) or the path of your own locustfile. The run gets a new run id and
writes into ``results/<run-id>/``: Locust CSV (full history), the HTML report, the console
log and ``run.json`` (command, times, exit code, versions, and the monitor's ClickHouse URL without
its password and database, which the automatic report reads). Any further options go to Locust
unchanged, e.g. ``python -m loadtesting.run http --users 100 --spawn-rate 10 --run-time 60s``.

``python -m loadtesting.run KIND --web [locust options]`` opens Locust's web UI instead; each test
started there gets its own run folder in ``--results`` (see loadtesting.webui_run).
"""

from __future__ import annotations

import argparse
import ast
import json
import os
import signal
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

from lifecycle.exit_codes import INTERRUPTED
from plumbing import settings
from plumbing.runid import new_run_id
from plumbing.versions import versions

REPO = Path(__file__).resolve().parent.parent
RESULTS = REPO / "results"


# Base classes of a Locust user; a module defining none is a helper, not a runnable kind.
USER_BASES = {"User", "HttpUser", "FastHttpUser"}

# A run stopped by a signal before its planned end (decided inside Locust by lifecycle).
EXIT_INTERRUPTED = set(INTERRUPTED.values())


def defines_users(path: Path) -> bool:
    """True if the file defines a class derived from a Locust user class (read, not imported:
    importing a locustfile would import locust, and gevent's patching, into this CLI)."""
    try:
        tree = ast.parse(path.read_text(), str(path))
    except (OSError, SyntaxError, ValueError):
        return False
    for node in ast.walk(tree):
        if isinstance(node, ast.ClassDef):
            for base in node.bases:
                name = base.attr if isinstance(base, ast.Attribute) else getattr(base, "id", "")
                if name in USER_BASES:
                    return True
    return False


def locustfiles() -> list[str]:
    """The suite's runnable kinds: locustfiles/<kind>.py that define Locust users."""
    return sorted(p.stem for p in (REPO / "locustfiles").glob("*.py") if defines_users(p))


def locustfile_path(kind: str) -> Path | None:
    """locustfiles/<kind>.py for a suite name, else an existing .py file given by path."""
    if kind in locustfiles():
        return REPO / "locustfiles" / f"{kind}.py"
    path = Path(kind)
    return path.resolve() if path.suffix == ".py" and path.is_file() else None


def ramp_warning(users: int | None, spawn_rate: float | None, run_time: float | None) -> str | None:
    """A warning when starting the users takes more than a third of the run: its figures would be
    mostly of the ramp (e.g. 500 MQTT devices at 10/s spend 50 s of a 60 s run connecting)."""
    if not (users and spawn_rate and run_time) or spawn_rate <= 0:
        return None
    ramp = users / spawn_rate
    if ramp <= run_time / 3:
        return None
    return (f"starting {users:,} users at {spawn_rate:g}/s takes {ramp:.0f} s of the {run_time:.0f} s run, so "
            f"its figures are mostly of the ramp: raise --spawn-rate (e.g. {users / (run_time / 10):g}) "
            "or --run-time")


def build_command(kind: str, out: Path, extra: list[str]) -> list[str]:
    cmd = [str(Path(sys.executable).with_name("locust")), "-f", str(locustfile_path(kind))]
    conf = REPO / "conf" / f"{kind}.conf"
    if conf.exists():
        cmd += ["--config", str(conf)]
    cmd += ["--headless", "--csv", str(out / "locust"), "--csv-full-history", "--html", str(out / "report.html")]
    return cmd + extra


def _option(extra: list[str], name: str) -> str | None:
    """The value of `name` among the options passed on to Locust (last one wins, as in Locust)."""
    value = None
    for i, arg in enumerate(extra):
        if arg == name and i + 1 < len(extra):
            value = extra[i + 1]
        elif arg.startswith(name + "="):
            value = arg.split("=", 1)[1]
    return value


def without_password(url: str) -> str:
    """`url` without the password of its userinfo (the client then takes it from CLICKHOUSE_PASSWORD
    or CLICKHOUSE_PASSWORD_FILE, as always); any other secret in it is masked."""
    from plumbing.redaction import redact

    try:
        parts = urlsplit(url)
        if parts.password is not None:
            userinfo, host = parts.netloc.rsplit("@", 1)
            url = urlunsplit(parts._replace(netloc=f"{userinfo.split(':', 1)[0]}@{host}"))
    except ValueError:
        pass
    return redact(url)


def record_monitor_target(folder: Path, clickhouse_url: str, database: str) -> None:
    """Add the ClickHouse URL (without its password) and database the run's monitor used to its
    run.json. Called inside Locust (loadtesting.locust_plugin) with its parsed options, which
    hold what config files and LOCUST_* variables set: the command line alone does not."""
    path = folder / "run.json"
    if not path.exists():
        return  # not a run folder of `python -m loadtesting.run`
    meta = json.loads(path.read_text())
    meta["monitor"] = {"clickhouse_url": without_password(clickhouse_url), "database": database}
    path.write_text(json.dumps(meta, indent=1))


def monitor_target(meta: dict, extra: list[str]) -> tuple[str, str]:
    """(ClickHouse URL, database) the run's monitor wrote to: as recorded in run.json by the run,
    else as the options and settings resolve them."""
    given = settings.CLICKHOUSE_URL.resolve(_option(extra, "--clickhouse-url"))
    recorded = meta.get("monitor") or {}
    url = recorded.get("clickhouse_url") or given
    if without_password(given) == url:
        url = given  # with the password given on the command line or in LOCUST_CLICKHOUSE_URL (never stored)
    database = recorded.get("database") or settings.MONITOR_DATABASE.resolve(_option(extra, "--monitor-database"))
    return url, database


def _report(run_id: str, results: Path, clickhouse_url: str, database: str, baseline: str | None = None) -> None:
    """The run's markdown and HTML report, with the comparison against `baseline` when given; a run
    whose report cannot be written still keeps its exit code."""
    from loadtesting import report
    from loadtesting.compare_data import CompareError
    from loadtesting.compare_report import baseline_section
    from plumbing.redaction import redact_text

    try:
        data = report.load(run_id, results, "auto", clickhouse_url, database)
        extra = []
        if baseline:
            try:
                extra.append(baseline_section(baseline, data, results, clickhouse_url, database))
            except CompareError as exc:
                print(f"warning: no comparison with run {baseline}: {redact_text(str(exc))}", file=sys.stderr)
        report.render(data, results / run_id, extra)
    except Exception as exc:  # noqa: BLE001 - e.g. the run died before writing any stats
        print(f"warning: no report for run {run_id}: {redact_text(str(exc))}", file=sys.stderr)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m loadtesting.run", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("kind", help="locustfile to run: " + ", ".join(locustfiles()))
    parser.add_argument("--results", type=Path, default=RESULTS, help="folder for run folders (default results/)")
    parser.add_argument("--no-report", action="store_true", help="do not write <kind>-results.md after the run")
    parser.add_argument("--web", action="store_true",
                        help="Locust's web UI instead of a headless run: each test started there gets its own "
                             "run folder in --results (loadtesting.webui_run)")
    parser.add_argument("--baseline", metavar="RUN_ID",
                        help="add the comparison with this run (id or run folder) to the report (loadtesting.compare)")
    args, extra = parser.parse_known_args(argv)
    from plumbing import logs
    from plumbing.redaction import redact_args

    logs.setup()
    if locustfile_path(args.kind) is None:
        print(f"error: {args.kind}: expected a kind ({', '.join(locustfiles())}) "
              "or the path of a .py locustfile", file=sys.stderr)
        return 2

    if args.web:
        return _web(args.kind, args.results, extra)
    if args.baseline:  # a wrong baseline is said before the run, not found out after it
        from loadtesting.compare_data import CompareError, load_run

        try:
            load_run(args.baseline, args.results, "auto", *monitor_target({}, extra))
        except CompareError as exc:
            print(f"error: --baseline {args.baseline}: {exc}", file=sys.stderr)
            return 2

    run_id = new_run_id()
    out = args.results.resolve() / run_id  # a relative --results is the caller's, for every file of the run
    out.mkdir(parents=True)
    cmd = build_command(args.kind, out, extra)
    env = {**os.environ, "LOCUST_RUN_ID": run_id, "LOCUST_RESULTS_DIR": str(out)}
    meta = {
        "run_id": run_id,
        "kind": args.kind if args.kind in locustfiles() else Path(args.kind).stem,
        "command": redact_args(cmd),  # no password reaches the console, run.json or a report
        "started": datetime.now(UTC).isoformat(timespec="seconds"),
        "versions": versions(),
    }
    (out / "run.json").write_text(json.dumps(meta, indent=1))
    print(f"run {run_id}: {' '.join(meta['command'])}", flush=True)

    t0 = time.monotonic()
    with open(out / "locust.log", "wb") as log:
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env, cwd=REPO)
        # Ctrl-C reaches Locust through the process group; let it shut down and write its files.
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, lambda *_: proc.send_signal(signal.SIGTERM))
        assert proc.stdout is not None
        for line in proc.stdout:
            sys.stdout.buffer.write(line)
            sys.stdout.flush()
            log.write(line)
        code = proc.wait()

    # Locust's plugin decides (130/143: stopped before the planned end); a signal that came
    # while the run was already ending (e.g. draining) does not make it an interrupted run.
    interrupted = code in EXIT_INTERRUPTED
    try:
        meta = {**meta, **json.loads((out / "run.json").read_text())}  # with what the run added: its monitor target
    except (OSError, ValueError):
        pass
    meta.update(ended=datetime.now(UTC).isoformat(timespec="seconds"),
                duration_s=round(time.monotonic() - t0, 1), exit_code=code, interrupted=interrupted)
    (out / "run.json").write_text(json.dumps(meta, indent=1))
    if not args.no_report:
        _report(run_id, args.results, *monitor_target(meta, extra), args.baseline)
    rel = out.relative_to(REPO) if out.is_relative_to(REPO) else out
    note = ", interrupted" if interrupted else ""
    print(f"\nresults of run {run_id} (exit code {code}{note}): {rel}/")
    for name in sorted(p.name for p in out.iterdir()):
        print(f"  {rel}/{name}")
    return code


def _web(kind: str, results: Path, extra: list[str]) -> int:
    """Locust with its web UI: the run folders are made per test, inside Locust."""
    cmd = [str(Path(sys.executable).with_name("locust")), "-f", str(locustfile_path(kind))]
    conf = REPO / "conf" / f"{kind}.conf"
    if conf.exists():
        cmd += ["--config", str(conf)]
    env = {k: v for k, v in os.environ.items() if k != settings.RESULTS_DIR.env}
    env[settings.RESULTS.env] = str(results.resolve())
    proc = subprocess.Popen([*cmd, *extra], env=env, cwd=REPO)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C reaches Locust through the process group
    signal.signal(signal.SIGTERM, lambda *_: proc.send_signal(signal.SIGTERM))
    return proc.wait()


if __name__ == "__main__":
    sys.exit(main())
