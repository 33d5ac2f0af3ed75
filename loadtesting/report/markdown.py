"""The markdown report: a list of sections, each a function of the run's data."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import backends
from loadtesting import sar
from loadtesting.report import html
from loadtesting.report.charts import charts, lag_unit
from loadtesting.report.data import RunData, options_from_command, phase_figures, window_latency
from loadtesting.report.findings import findings, fmt
from plumbing.redaction import redact, where


def _table(header: list[str], rows: list[list]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(fmt(v) if not isinstance(v, str) else v for v in row) + " |" for row in rows]
    return lines


def _titled_table(title: str, header: list[str], rows: list[list]) -> list[str]:
    """A section that is one table: its heading, the table and a blank line."""
    return [f"## {title}", "", *_table(header, rows), ""]


def _when(t: float) -> str:
    return datetime.fromtimestamp(t, UTC).strftime("%H:%M:%S")


def target(kind: str, meta: dict, opts: dict) -> str:
    """What the run loaded: the pipeline entry point, brokers and topic, or the site."""
    if kind == "tracking" and opts.get("pipeline_backend"):
        backend = opts["pipeline_backend"]
        entry = backends.get(backend).entry(opts) if backend in backends.NAMES else ""
        return f"{backend} pipeline" + (f" at {entry}" if entry else "")
    if kind == "kafka" and opts.get("kafka_topic"):
        return f"topic {opts['kafka_topic']} on {where(opts.get('kafka_brokers')) or 'the default brokers'}"
    if kind == "mqtt" and opts.get("mqtt_url"):
        return f"MQTT broker {where(opts['mqtt_url'])}"
    host = meta.get("host") or opts.get("host")
    return redact(host) if host else "–"


@dataclass
class Page:
    """What every report section reads: the run's data, each phase's figures, the charts drawn."""

    data: RunData
    figures: dict[str, dict]
    charts: list[Path]


def section_tested(page: Page) -> list[str]:
    """What was tested: when, the target, the command, tags, exit code, versions, data source."""
    data = page.data
    md: list[str] = []
    md += ["## What was tested", ""]
    meta = data.meta
    opts = meta.get("options") or options_from_command(meta.get("command") or [])
    facts = [
        ("Started / ended (UTC)", f"{meta.get('started') or '–'} / {meta.get('ended') or '–'}"),
        ("Target", target(data.kind, meta, opts)),
        ("Command", " ".join(meta["command"][1:]) if meta.get("command") else "–"),
        ("Tags", ", ".join(meta.get("tags") or str(opts.get("run_tags") or "").split(",")).strip(", ") or "–"),
        ("Exit code", fmt(meta.get("exit_code"))),
        ("Versions", ", ".join(f"{k} {v}" for k, v in (meta.get("versions") or {}).items()) or "–"),
        ("Data source", "ClickHouse (monitor tables)" if data.source == "clickhouse" else "run folder CSV files"),
    ]
    md += _table(["", ""], [[k, str(v).replace("|", "\\|")] for k, v in facts]) + [""]
    return md


def section_findings(page: Page) -> list[str]:
    """The findings, in words."""
    data = page.data
    figures = page.figures
    md: list[str] = []
    md += ["## Findings", ""]
    for para in findings(data, figures):
        md += [para, ""]
    return md


def section_capacity(page: Page) -> list[str]:
    """The capacity search's steps and its maximum sustainable load."""
    data = page.data
    md: list[str] = []
    if data.capacity and data.capacity.get("steps") and "sustained_per_second" in data.capacity:
        return rate_capacity_section(data.capacity)
    if data.capacity and data.capacity.get("steps"):
        cap = data.capacity
        md += ["## Capacity", "",
               f"Maximum sustainable load: **{cap['max_sustainable_users']} users**, "
               f"{fmt(cap['max_sustainable_rps'])} requests/s, p95 {fmt(cap['p95_ms_at_max'], 0)} ms "
               f"(resolution {cap['resolution']} users)."
               + (" **The search was stopped before its end**: a partial result." if cap.get("stopped") else ""), ""]
        header = ["step", "users", "requests/s", "requests", "failures", "p95 ms", "result"]
        rows = [[i + 1, s["users"], s["rps"], s["requests"], s["failures"], s["p95_ms"],
                 "ok" if s["ok"] else f"failed: {s['why']}"] for i, s in enumerate(cap["steps"])]
        if data.planned:  # each step's window, from the merged interval histograms
            header[6:6] = ["p95 from planned start ms"]
            for row, s in zip(rows, cap["steps"], strict=True):
                row[6:6] = [window_latency(data, s["start"], s["end"]).get("planned", {}).get("p95_ms")]
        md += ["A step's p95 is Locust's percentile of the requests in its measured window (the difference of "
               "Locust's cumulative histogram over the window)."
               + (" The p95 from the planned start merges the monitor's intervals ending in the window." if
                  data.planned else ""), ""]
        md += _table(header, rows) + [""]
    return md


def rate_capacity_section(cap: dict) -> list[str]:
    """A rate search (events/s): what was sustained, what failed first and why, the named bottleneck, every step."""
    unit = cap.get("unit", "events")
    md = ["## Capacity", ""]
    first = cap.get("first_failing")
    if cap.get("generator_limited_at") is not None:
        why = next(s["why"] for s in cap["steps"] if s["verdict"] == "generator")
        md += [f"**The generator was the limit at {cap['generator_limited_at']:g} {unit}/s** ({why}): "
               "raise -u/--users, --processes or the Locust workers. "
               + (f"The pipeline sustained at least {cap['sustained_per_second']:g} {unit}/s." if
                  cap["sustained_per_second"] else "No capacity is claimed."), ""]
    elif cap.get("stopped"):
        during = cap.get("stopped_during")
        md += ["**The search was stopped before its end**"
               + (f" (while measuring {during:g} {unit}/s)" if during is not None else "") + ": a partial result. "
               + (f"Sustained at least **{cap['sustained_per_second']:g} {unit}/s**" if cap["sustained_per_second"]
                  else "No step passed")
               + (f"; the first failing step was {first['target']:g} {unit}/s: {first['why']}." if first else "."), ""]
    else:
        md += [f"Sustained: **{cap['sustained_per_second']:g} {unit}/s** (resolution {cap['resolution']:g}), "
               f"end-to-end p95 {fmt(cap.get('e2e_p95_ms_at_sustained'), 0)} ms there."
               + (f" The first failing step was {first['target']:g} {unit}/s: {first['why']}." if first else
                  "" if cap.get("stopped_by_time_limit") is not None else " No step failed up to --capacity-max-rate.")
               + (f" Stopped by --capacity-time-limit ({cap['time_limit_s']:g} s) before trying "
                  f"{cap['stopped_by_time_limit']:g} {unit}/s." if cap.get("stopped_by_time_limit") is not None else ""),
               ""]
    if cap.get("bottleneck"):
        md += [f"Bottleneck: **{cap['bottleneck']['stage']}**: {cap['bottleneck']['evidence']}.", ""]
    rule = cap.get("rule", {})
    md += [f"A step passes when every backlog's least-squares slope over its {fmt(rule.get('step_time_s'))} s window "
           "(over every sample, or over its troughs — the low after each flush — when that is narrower: a sawtooth), "
           f"with its 95 % interval, stays under {fmt(100 * rule.get('backlog_tolerance', 0))} % of the rate, the "
           f"end-to-end p95 is under {fmt(rule.get('slo_e2e_p95_ms'), 0)} ms and no send failed (docs/capacity.md).",
           ""]
    header = ["target /s", "offered /s", "stored /s", "backlog slope /s", "bus slope /s", "e2e p95 ms",
              "e2e p95 from planned ≤ ms", "drops", "generator CPU %", "result"]
    rows = []
    for s in cap["steps"]:
        e2e, bus = s["backlog"].get("sent − stored"), s["backlog"].get("bus")
        rows.append([s["target"], s["offered_per_s"], s["stored_per_s"],
                     _slope_text(e2e), _slope_text(bus), s["e2e_p95_ms"],
                     s["e2e_p95_from_planned_ms"], s["dropped"], s["generator_cpu_max"],
                     "ok" if s["verdict"] == "pass" else f"{s['verdict']}: {s['why']}"])
    return md + _table(header, rows) + [""]


def _slope_text(trend: dict | None) -> str | None:
    """A backlog's slope ± its interval; "(troughs)" when its troughs judged it."""
    if not trend:
        return None
    return f"{trend['slope']:+.1f} ± {trend['ci']:.1f}" + (" (troughs)" if trend.get("basis") == "troughs" else "")


def section_phases(page: Page) -> list[str]:
    """The phases' figures (and sar per phase), or sar over the whole run."""
    data = page.data
    figures = page.figures
    md: list[str] = []
    if data.phases:
        md += ["## Phases", "", "Windows on the timeline where the figures below were taken "
               "(the brief's sar capture points when the capacity search marked them).", ""]
        rows = []
        planned = any("p95_planned_ms" in figures[p.name] for p in data.phases)
        for p in data.phases:
            f = figures[p.name]
            rows.append([p.name, f"{_when(p.start)}–{_when(p.end) if p.end else 'open'}", f.get("users"),
                         f.get("rps"), f.get("failures", f.get("fail_rps")), f.get("p95_ms"),
                         *([f.get("p95_planned_ms")] if planned else []), p.source])
        md += ["Percentiles merge the histograms of the monitor's intervals in the window (a capacity step's "
               "are its own window's).", ""]
        md += _table(["phase", "window (UTC)", "users", "requests/s", "failures", "p95 ms",
                      *(["p95 from planned start ms"] if planned else []), "marked by"], rows) + [""]
        keys = [("cpu_user", "CPU user %"), ("cpu_system", "CPU system %"), ("cpu_iowait", "iowait %"),
                ("cpu_idle", "idle %"), ("mem_used_pct", "memory used %"), ("disk_tps", "disk IO/s"),
                ("disk_write_kBps", "disk write kB/s"), ("net_rx_kBps", "net rx kB/s"),
                ("net_tx_kBps", "net tx kB/s"), ("loopback_kBps", "loopback kB/s")]
        for label, _rows, pick in _sar_machines(data):
            md += [f"### System activity (sar) per phase: {label}", ""]
            md += _table(["phase", *[name for _, name in keys]],
                         [[p.name, *[(pick(figures[p.name]) or {}).get(k) for k, _ in keys]]
                          for p in data.phases]) + [""]
    else:
        for label, rows, _pick in _sar_machines(data):
            md += _titled_table(f"System activity (sar), whole run: {label}", ["figure", "average"],
                                [[k, v] for k, v in sar.summarize(rows).items()])
    return md


def _sar_machines(data: RunData) -> list[tuple[str, dict, Callable[[dict], dict | None]]]:
    """Each machine with sar figures: its label (role and host), its rows, how to pick its phase summary."""
    out: list[tuple[str, dict, Callable[[dict], dict | None]]] = []
    if data.sar:
        host = sar.hostname(data.sar)
        out.append((f"load generator{f' {host}' if host else ''}", data.sar, lambda f: f.get("sar")))
    for host, rows in data.sut_sar.items():
        out.append((f"system under test {host}", rows, lambda f, h=host: (f.get("sut_sar") or {}).get(h)))
    return out


def section_requests(page: Page) -> list[str]:
    """Every request name's figures over the whole run."""
    data = page.data
    md: list[str] = []
    md += ["## Requests", ""]
    if data.source == "clickhouse" and any(r.get("p50_ms") is None for r in data.requests):
        md += ["This run was stored without interval histograms: its percentiles are not known from ClickHouse "
               "(`--source csv` uses stats.json when the run folder has it).", ""]
    md += ["Response time is Locust's (from sending to the response). Percentiles are Locust's, of the whole run: "
           "the merged histograms of every interval, equal to Locust's final figures and at most the maximum.", ""]
    kinds = {r["type"] for r in data.requests}
    if kinds & {"E2E", "DROPPED"}:
        md += ["*Aggregated* holds the generator's own requests only, and so do `--check-p95`, the capacity search "
               "and load.png."
               + (" **E2E** rows are not requests of the generator: each is the pipeline's end-to-end latency "
                  "(an event or message from its time of sending to where it came out), judged by "
                  "`--check-e2e-p95` and charted in e2e.png." if "E2E" in kinds else "")
               + (" **DROPPED** rows count planned iterations no user was free for (never sent)."
                  if "DROPPED" in kinds else ""), ""]
    md += _table(["type", "name", "requests", "failures", "requests/s", "avg ms", "p50 ms", "p95 ms", "p99 ms",
                  "max ms"], [[r["type"], r["name"], r["requests"], r["failures"], r["rps"], r["avg_ms"],
                               r["p50_ms"], r["p95_ms"], r["p99_ms"], r["max_ms"]] for r in data.requests])
    md += [""]
    return md


def section_planned(page: Page) -> list[str]:
    """Open model: response time from the planned start beside the service time."""
    data = page.data
    md: list[str] = []
    if data.planned:
        service = {(r["type"], r["name"]): r for r in data.requests}
        md += ["## Response time from the planned start", "",
               "Open-model requests timed twice: *service* from sending (as above), *from planned* from the instant "
               "the arrival-rate plan gave the request, so a late start counts (coordinated omission). "
               "*Difference* is from planned minus service, at p95.", ""]
        rows = []
        for r in data.planned:
            s = service.get((r["type"], r["name"]), {})
            wait = (r["p95_ms"] - s["p95_ms"]) if r.get("p95_ms") is not None and s.get("p95_ms") is not None \
                else None
            rows.append([r["type"], r["name"], r["requests"], s.get("p50_ms"), s.get("p95_ms"), s.get("p99_ms"),
                         r["p50_ms"], r["p95_ms"], r["p99_ms"], r["max_ms"], wait])
        md += _table(["type", "name", "requests", "service p50 ms", "service p95 ms", "service p99 ms",
                      "from planned p50 ms", "from planned p95 ms", "from planned p99 ms", "from planned max ms",
                      "difference at p95 ms"], rows) + [""]
    return md


def section_failures(page: Page) -> list[str]:
    """The most frequent failures."""
    top = sorted(page.data.failures, key=lambda f: -f["occurrences"])[:20]
    if not top:
        return []
    return _titled_table("Failures", ["method", "name", "error", "occurrences"],
                         [[f["method"], f["name"], f["error"][:200].replace("|", "\\|"), f["occurrences"]] for f in top])


def section_lag(page: Page) -> list[str]:
    """The pipeline lag series: peak and last."""
    lag = page.data.lag
    if not lag:
        return []
    return _titled_table("Pipeline lag", ["series", "unit", "peak", "last"],
                         [[k, lag_unit(k), max(v for _, v in s), s[-1][1]] for k, s in lag.items()])


def section_generator_hosts(page: Page) -> list[str]:
    """Distributed runs: sar of each worker host, beside the master's own (above)."""
    hosts = (page.data.meta.get("extra") or {}).get("generator_hosts")
    if not hosts:
        return []
    keys = ["samples", "cpu_user", "cpu_system", "cpu_iowait", "cpu_idle", "mem_used_pct", "net_rx_kBps",
            "net_tx_kBps"]
    md = _titled_table("System activity (sar) per worker host", ["host", *keys],
                       [[h, *[s.get(k) for k in keys]] for h, s in hosts.items()])
    return md + ["Averages over each worker's test, recorded on its own host (a generator near 100 % CPU "
                 "measures itself, not the system under test).", ""]


def section_clocks(page: Page) -> list[str]:
    """Distributed runs: each worker's clock offset from the master, and what it means for latencies."""
    extra = page.data.meta.get("extra") or {}
    clocks = extra.get("clocks")
    if not clocks:
        return []
    rows = [[i, f"{r['offset_ms']:+.1f}", f"± {r['uncertainty_ms']:.1f}", r["round_trip_ms"], r["exchanges"]]
            for i, r in clocks["workers"].items()]
    corrected = (extra.get("e2e") or {}).get("clock_offsets_ms")
    md = _titled_table("Clocks", ["worker", "offset from master ms", "uncertainty ms", "round trip ms", "exchanges"],
                       rows)
    md += ["Offsets are the master's clock minus each worker's, from NTP-style exchanges over Locust's worker "
           "messages (the shortest round trip of the last 16; the true offset is within ± half of it).",
           "Response times are measured on one host and need no correction. "
           + ("End-to-end latencies of tracking events (event time on a worker, arrival seen on the master) "
              "were corrected by these offsets, so they are uncertain by up to "
              f"{clocks['max_uncertainty_ms']:.1f} ms more."
              if corrected else
              "Latencies that compare a worker's time with another host's (end-to-end, Kafka) are off by up to "
              f"{clocks['max_abs_offset_ms']:.1f} ms where they were not corrected."), ""]
    return md


def section_charts(page: Page) -> list[str]:
    """The charts, with the phases shaded."""
    made = page.charts
    md: list[str] = []
    if made:
        md += ["## Charts", ""]
        md += [f"![{p.stem}](charts/{p.name})" for p in made] + [""]
        md += ["Shaded bands are the phases (green minimal load, blue maximum sustainable, red failure).", ""]
    return md


# The report, top to bottom: adding a section is one function above and one entry here.
SECTIONS = [section_tested, section_findings, section_capacity, section_phases, section_requests, section_planned,
            section_failures, section_lag, section_generator_hosts, section_clocks, section_charts]


def render(data: RunData, folder: Path, extra: Sequence[Callable[[Page], list[str]]] = ()) -> Path:
    """Write `<kind>-results.md` and its self-contained twin `<kind>-results.html`; `extra` sections
    (e.g. the comparison with a baseline run) come after SECTIONS."""
    folder.mkdir(parents=True, exist_ok=True)
    page = Page(data, {p.name: phase_figures(data, p) for p in data.phases}, charts(data, folder / "charts"))
    md = [f"# {data.kind.upper()} load test results — run {data.run_id}", ""]
    for section in [*SECTIONS, *extra]:
        md += section(page)
    path = folder / f"{data.kind}-results.md"
    path.write_text("\n".join(md))
    html.write(path)
    return path
