"""The comparison of two runs as markdown (``python -m loadtesting.compare``, and the section a run's
report adds with ``--baseline``) and the chart of both runs' p95 per interval."""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path

import numpy as np

from loadtesting.compare_data import AGGREGATED, CompareError, Run, build_run, interval_rows, load_run
from loadtesting.compare_gates import Gate
from loadtesting.compare_stats import BETTER, REPLICATES, UNTESTED, WORSE, Comparison, Delta, compare, percentile
from loadtesting.report import charts
from loadtesting.report import data as report_data
from loadtesting.report.findings import fmt


def _num(v: float | None, unit: str) -> str:
    if v is None:
        return "–"
    if math.isinf(v):
        return "∞" if v > 0 else "−∞"
    digits = 3 if unit == "%" and abs(v) < 1 else 0 if unit in ("users", "events") or abs(v) >= 100 else 1
    return fmt(float(v), digits)


def _signed(v: float | None, unit: str) -> str:
    if v is None:
        return "–"
    text = _num(abs(v), unit)
    return ("+" if v > 0 else "−" if v < 0 else "±") + text


def _delta_cell(d: Delta) -> str:
    if d.delta is None:
        return "–"
    rel = d.relative
    unit = "pp" if d.figure.unit == "%" else d.figure.unit
    pct = ""
    if rel is not None and d.figure.unit != "%":
        pct = f" ({'+' if rel > 0 else '−' if rel < 0 else '±'}{abs(rel):.1%})"
    return f"{_signed(d.delta, d.figure.unit)} {unit}{pct}"


def _ci_cell(d: Delta) -> str:
    if d.ci is None:
        return "–"
    return f"{_signed(d.ci[0], d.figure.unit)} … {_signed(d.ci[1], d.figure.unit)}"


def _verdict_cell(d: Delta) -> str:
    if d.ci is None:
        return f"{UNTESTED} ({d.why})" if d.why else UNTESTED
    return f"**{d.verdict}**" if d.verdict in (WORSE, BETTER) else d.verdict


def _row(d: Delta, with_request: bool) -> list[str]:
    unit = d.figure.unit
    cells = [f"{d.figure.label} ({unit})", _num(d.base, unit), _num(d.cand, unit), _delta_cell(d), _ci_cell(d),
             _verdict_cell(d)]
    return ([d.request.replace("|", "\\|")] if with_request else []) + cells


def _table(header: list[str], rows: list[list[str]]) -> list[str]:
    return ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|",
            *["| " + " | ".join(r) + " |" for r in rows]]


def _describe(run: Run) -> str:
    n = len(run.seconds)
    length = float(run.seconds.sum())
    src = "ClickHouse" if run.data.source == "clickhouse" else "run folder"
    first, last = run.skipped
    skipped = (f" (its first {first:g} s and last {last:g} s left out)" if first and last else
               f" (its first {first:g} s left out)" if first else f" (its last {last:g} s left out)" if last else "")
    return (f"`{run.run_id}` ({run.data.kind}, started {run.data.meta.get('started') or '–'}, "
            f"{n} intervals over {length:.0f} s{skipped}, from {src})")


def markdown(c: Comparison, gates: list[tuple[Gate, Delta, bool]] | None = None, level: int = 1) -> list[str]:
    h = "#" * level
    worse = [d for d in [*c.key, *c.requests] if d.verdict == WORSE]
    better = [d for d in [*c.key, *c.requests] if d.verdict == BETTER]
    md = [f"{h} Comparison with baseline run {c.base.run_id}" if level > 1 else
          f"{h} Run {c.cand.run_id} compared with baseline {c.base.run_id}", "",
          f"Baseline {_describe(c.base)}; candidate {_describe(c.cand)}.", ""]
    summary = (f"{len(worse)} figure(s) **worse**: " + ", ".join(f"{d.figure.label}"
                                                              + (f" of {d.request}" if d.request else "")
                                                              for d in worse) + "." if worse else
               "No figure is worse.")
    if better:
        summary += f" {len(better)} better."
    md += [summary, ""]
    md += ["Delta is candidate minus baseline; its 95 % confidence interval comes from a moving-block bootstrap "
           f"over each run's monitor intervals ({REPLICATES} replicates: resample intervals, merge their "
           "histograms, recompute the figure). A verdict of better or worse needs the interval to exclude 0 "
           "and the change to reach the figure's practical size (latency 20 % and one histogram bucket, "
           "requests/s 10 %, failure ratio 0.5 points, lag 20 % and 0.5 s); gates use their own tolerance. The bootstrap sees the noise "
           "within each run, not the run-to-run variation of the machine: see docs/compare.md.", ""]
    md += [f"{h}# Key figures", ""]
    md += _table(["figure", "baseline", "candidate", "delta", "95 % CI of delta", "verdict"],
                 [_row(d, False) for d in c.key]) + [""]
    if c.requests:
        md += [f"{h}# Per request", ""]
        md += _table(["request", "figure", "baseline", "candidate", "delta", "95 % CI of delta", "verdict"],
                     [_row(d, True) for d in c.requests]) + [""]
    if gates:
        md += [f"{h}# Gates", ""]
        md += _table(["gate", "delta", "significantly worse", "result"],
                     [[g.text, _delta_cell(d), "yes" if d.significantly_worse() else "no",
                       "**failed**" if failed else "passed"] for g, d, failed in gates]) + [""]
    return md


def section(c: Comparison) -> Callable[[object], list[str]]:
    """A report section (loadtesting.report.markdown.render's `extra`) holding this comparison."""
    return lambda _page: markdown(c, level=2)


def baseline_section(baseline: str, data: report_data.RunData, results: Path, clickhouse_url: str | None,
                     database: str | None) -> Callable[[object], list[str]]:
    """The section comparing a loaded run (the report's `data`) with `baseline` (run id or folder)."""
    base = load_run(baseline, results, "auto", clickhouse_url, database)
    try:
        lengths, rows = interval_rows(data, results / data.run_id)
        cand = build_run(data.run_id, data, rows, lengths)
    except Exception as exc:  # noqa: BLE001 - ClickHouse went away since the report loaded the run
        raise CompareError(f"run {data.run_id}: its intervals could not be read: {exc}") from None
    return section(compare(base, cand))


def chart(c: Comparison, path: Path) -> Path | None:
    """p95 per interval of both runs (Aggregated), on one time axis from each run's start."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(10, 3.5))
    drawn = False
    for run, label, colour in ((c.base, "baseline", "#1f77b4"), (c.cand, "candidate", "#d62728")):
        s = run.series.get(AGGREGATED)
        if s is None or not len(run.seconds):
            continue
        p95 = percentile(s, np.eye(len(run.seconds)), 0.95)
        ax.plot(np.cumsum(run.seconds), p95, label=f"{label} {run.run_id}", color=colour, linewidth=1.2)
        drawn = True
    if not drawn:
        plt.close(fig)
        return None
    return charts.finish(fig, ax, "seconds since start", "p95 per interval (ms)", path)
