"""``python -m loadtesting.compare BASELINE CANDIDATE``: is the candidate run better or worse than the baseline?

BASELINE and CANDIDATE are run ids (read from ClickHouse, else from ``results/<run-id>/``) or run
folders. Both runs are compared per request name and on the run's key figures: p50/p95/p99 of
the merged interval histograms, requests/s, failure ratio, dropped iterations, backlog peak,
ClickHouse lag, end-to-end p95 and capacity (when both runs searched). Each figure gets the
delta, a 95 % confidence interval of the delta and a verdict; the method is in docs/compare.md:

- Interval figures (percentiles, rates, ratios) come from the monitor's per-interval rows, each
  holding the interval's latency histogram. A moving-block bootstrap resamples each run's
  intervals (blocks of consecutive intervals, so drift and autocorrelation stay in), merges the
  resampled histograms and recomputes the figure exactly as the report does (Locust's percentile
  rule, never a mean of percentiles); the delta's 2.5th and 97.5th bootstrap percentiles bound it.
- "worse" or "better" needs both: the interval excludes 0 (significance) and the change is at
  least the figure's practical size (relative and absolute, e.g. 20 % and one histogram bucket for
  latency). A significant change smaller than that is "no practical change"; else "no
  significant change". A figure with fewer than MIN_INTERVALS intervals in a run is not tested.
- Capacity: each search brackets its limit (highest step served, first step failing); "worse"
  when the candidate failed at a load the baseline sustained. Backlog peak is one value per run
  (a maximum, which a bootstrap cannot bound): shown, not tested.

``--skip-first S`` / ``--skip-last S`` leave out each run's ramp-up and stop (the steady state only).
``--fail-on p95:+10%,rps:-5%`` gates CI: exit 1 when a gated figure is significantly worse and its
change is beyond the tolerance (N% relative, or N in the figure's unit). Exit 2: bad input.
"""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

from loadtesting.compare_data import CompareError, load_run
from loadtesting.compare_gates import apply_gates, parse_gates
from loadtesting.compare_report import chart, markdown
from loadtesting.compare_stats import FIGURES, compare
from loadtesting.report import data as report_data


# -- command line ----------------------------------------------------------------------------------
def main(argv: list[str] | None = None) -> int:
    from plumbing import logs
    from plumbing.redaction import redact_text

    logs.setup()
    parser = argparse.ArgumentParser(prog="python -m loadtesting.compare", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("baseline", help="run id or run folder of the baseline")
    parser.add_argument("candidate", help="run id or run folder of the run to judge")
    parser.add_argument("--fail-on", default="", metavar="GATES",
                        help="exit 1 when one of these figures is significantly worse beyond its tolerance, "
                             "e.g. p95:+10%%,rps:-5%%,failures:+1 (figures: "
                             + ", ".join(k for k, f in FIGURES.items() if f.tested) + ")")
    parser.add_argument("--results", type=Path, default=report_data.RESULTS,
                        help="folder of run folders for run ids (default results/)")
    parser.add_argument("--source", choices=("auto", "clickhouse", "csv"), default="auto",
                        help="where figures come from (auto: ClickHouse when it has the run, else the folder)")
    parser.add_argument("--clickhouse-url", default=None,
                        help="default: what each run recorded in run.json, else LOCUST_CLICKHOUSE_URL or the stack's")
    parser.add_argument("--monitor-database", default=None, help="default: the run's, else event_sink")
    parser.add_argument("--skip-first", type=float, default=0.0, metavar="SECONDS",
                        help="leave out each run's intervals ending in its first SECONDS (ramp-up, warm-up); "
                             "the figures are then those of the rest, not the report's whole-run ones")
    parser.add_argument("--skip-last", type=float, default=0.0, metavar="SECONDS",
                        help="leave out each run's intervals ending in its last SECONDS (the stop; a pipeline "
                             "run's drain holds end-to-end latencies, keep it)")
    parser.add_argument("--out", type=Path,
                        help="also write compare-<baseline>-<candidate>.md and .html (self-contained) here")
    args = parser.parse_args(argv)
    try:
        for name, value in (("--skip-first", args.skip_first), ("--skip-last", args.skip_last)):
            if not (value >= 0 and math.isfinite(value)):
                raise CompareError(f"{name} {value:g}: expected seconds >= 0")
        gates = parse_gates(args.fail_on) if args.fail_on else []
        runs = [load_run(ref, args.results, args.source, args.clickhouse_url, args.monitor_database,
                         args.skip_first, args.skip_last) for ref in (args.baseline, args.candidate)]
        for run in runs:
            if args.source == "auto" and run.data.source != "clickhouse":
                print(f"note: run {run.run_id} read from its run folder (ClickHouse unreachable, or the run is "
                      "not there)", file=sys.stderr)
        comparison = compare(*runs)
        results = apply_gates(comparison, gates) if gates else []
    except CompareError as exc:
        print(f"error: {redact_text(str(exc))}", file=sys.stderr)
        return 2
    md = "\n".join(markdown(comparison, results)) + "\n"
    sys.stdout.write(md)
    if args.out:
        from loadtesting.report import html

        args.out.mkdir(parents=True, exist_ok=True)
        path = args.out / f"compare-{comparison.base.run_id}-{comparison.cand.run_id}.md"
        png = chart(comparison, path.with_suffix(".png"))
        path.write_text(md + (f"\n![p95 per interval]({png.name})\n" if png else ""))
        print(f"comparison: {path} and {html.write(path)}", file=sys.stderr)
    failed = [g.text for g, _d, bad in results if bad]
    if failed:
        print(f"gate failed: {', '.join(failed)} (significantly worse beyond the tolerance)", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
