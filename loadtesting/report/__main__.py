"""``python -m loadtesting.report <run-id>``: the markdown report of a run (see loadtesting.report)."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from loadtesting.report.data import RESULTS, ReportError, latest_run, load
from loadtesting.report.markdown import render
from loadtesting.run import monitor_target
from plumbing import logs
from plumbing.redaction import redact, redact_text


def main(argv: list[str] | None = None) -> int:
    logs.setup()  # the ClickHouse client logs a failed connection with a traceback; the fallback is said below
    parser = argparse.ArgumentParser(prog="python -m loadtesting.report", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run_id", nargs="?", default="", help="run id (default: the newest run in results/)")
    parser.add_argument("--results", type=Path, default=RESULTS, help="folder of run folders (default results/)")
    parser.add_argument("--source", choices=("auto", "clickhouse", "csv"), default="auto",
                        help="where figures come from (auto: ClickHouse when it has the run, else the folder)")
    parser.add_argument("--clickhouse-url", default=None,
                        help="default: what the run recorded in run.json, else LOCUST_CLICKHOUSE_URL or the stack's")
    parser.add_argument("--monitor-database", default=None,
                        help="default: what the run recorded in run.json, else LOCUST_MONITOR_DATABASE or event_sink")
    parser.add_argument("--sar-file", type=Path, action="append", default=[],
                        help="sar file of a system under test, recorded on its host (repeat for each host); "
                             "reported beside the load generator's own sar.data, labelled by host")
    parser.add_argument("--out", type=Path, help="folder for the report (default: the run folder)")
    parser.add_argument("--baseline", metavar="RUN_ID",
                        help="add the comparison with this run (id or run folder): loadtesting.compare")
    args = parser.parse_args(argv)
    run_id = args.run_id or latest_run(args.results)
    if not run_id:
        print(f"error: no run in {args.results}; expected a run id (make demo or loadtesting.run makes one)",
              file=sys.stderr)
        return 2
    for path in args.sar_file:
        if not path.is_file():
            print(f"error: --sar-file {path}: not a file", file=sys.stderr)
            return 2
    try:
        meta = json.loads((args.results / run_id / "run.json").read_text())
    except (OSError, ValueError):
        meta = {}
    recorded_url, recorded_database = monitor_target(meta, [])  # the run's own, else the settings'
    url, database = args.clickhouse_url or recorded_url, args.monitor_database or recorded_database
    try:
        data = load(run_id, args.results, args.source, None if args.source == "csv" else url, database,
                    args.sar_file)
    except ReportError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if args.source == "auto" and data.source != "clickhouse":
        print(f"note: run {run_id} not read from ClickHouse {redact(url)} (database {database}): unreachable, or "
              "the run is not there; the report uses the run folder's files", file=sys.stderr)
    extra = []
    if args.baseline:
        from loadtesting.compare_data import CompareError
        from loadtesting.compare_report import baseline_section

        try:
            extra.append(baseline_section(args.baseline, data, args.results, url, database))
        except CompareError as exc:
            print(f"error: --baseline {args.baseline}: {redact_text(str(exc))}", file=sys.stderr)
            return 2
    path = render(data, args.out or args.results / run_id, extra)
    print(f"report of run {run_id} (from {data.source}): {path} and {path.with_suffix('.html')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
