"""Markdown results of a run, with charts: ``python -m loadtesting.report <run-id>`` (or ``make report``).

Writes ``results/<run-id>/<kind>-results.md`` (kind = http, mqtt, kafka …) and PNG charts under
``results/<run-id>/charts/``: what was tested and how, the capacity found, per-phase tables of
Locust figures and sar CPU/memory/disk/network, pipeline lag and end-to-end latency when the run
has them, and findings in plain language.

Data comes from ClickHouse (the monitor's tables) when the run is there, else from the run
folder's files (stats.json or Locust CSV, request_stats.jsonl, samples.jsonl, capacity.json,
phases.jsonl); the sar file and the failure messages always come from the folder (ClickHouse
holds neither).

Percentiles of the whole run and of each phase merge the sampling intervals' histograms (in SQL
on ClickHouse, in Python on the folder's request_stats.jsonl): the whole run's equal Locust's
final figures (stats.json). Open-model runs also have the response time from each request's
planned start (`timing = 'planned'` rows): the report gives both and the difference.
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import backends
from loadtesting import phases as phase_mod
from loadtesting import sar
from plumbing import histogram, settings
from plumbing.redaction import redact, where

REPO = Path(__file__).resolve().parent.parent
RESULTS = REPO / "results"

REQUEST_STATS_FILE = "request_stats.jsonl"  # the monitor's interval rows, histograms included
TIMINGS = ("service", "planned")
AGGREGATED = "AND request_type = '' AND name = 'Aggregated'"

# Every query the report runs; tests execute each on ClickHouse 18.16 and on chDB.
QUERIES = {
    "meta": "SELECT started, ended, locustfile, host, tags, options, versions, exit_code, drained, drain_seconds, "
            "max_backlog, extra FROM {db}.load_test_meta FINAL WHERE run_id = %(run)s",
    "timeline": "SELECT time_ms, users, rps, fail_rps, p95_ms FROM {db}.load_test_request_stats "
                f"WHERE run_id = %(run)s {AGGREGATED} AND timing = 'service' ORDER BY time_ms",
    # The whole run per timing and request name: the intervals' histograms merged.
    "requests": histogram.merged_sql("{db}"),
    # A phase or capacity step: the Aggregated histograms of the intervals ending in (t0, t1] (ms).
    "window": histogram.merged_sql("{db}", f"{AGGREGATED} AND time_ms > %(t0)s AND time_ms <= %(t1)s", "timing"),
    "lag": "SELECT time_ms, source, metric, value FROM {db}.load_test_samples WHERE run_id = %(run)s "
           "AND ((source = 'monitor' AND metric = 'backlog') OR metric = 'lag_seconds' OR metric = 'lag') "
           "ORDER BY time_ms",
    "events": "SELECT toUInt32(timestamp), event_type, extra FROM {db}.load_test_runs WHERE run_id = %(run)s "
              "ORDER BY timestamp",
}


@dataclass
class RunData:
    run_id: str
    source: str  # "clickhouse" or "csv"
    kind: str = "http"
    meta: dict = field(default_factory=dict)
    timeline: list[dict] = field(default_factory=list)  # time, users, rps, fail_rps, p95
    requests: list[dict] = field(default_factory=list)  # per request name, the whole run
    planned: list[dict] = field(default_factory=list)  # the same, timed from the planned start (open model)
    intervals: list[dict] = field(default_factory=list)  # Aggregated interval rows with histograms (folder)
    clickhouse: tuple[str, str] | None = None  # (url, database) the run was loaded from
    failures: list[dict] = field(default_factory=list)
    lag: dict[str, list[tuple[float, float]]] = field(default_factory=dict)  # series name -> (time, value)
    capacity: dict | None = None
    phases: list[phase_mod.Phase] = field(default_factory=list)
    sar: dict | None = None  # sar.read() rows


class ReportError(RuntimeError):
    pass


# -- loading -------------------------------------------------------------------------------------
def _kind(locustfile: str) -> str:
    name = Path(str(locustfile).split(",")[0]).stem
    return name if name in ("http", "mqtt", "kafka", "tracking") else "load"


def _num(text: str | None) -> float:
    try:
        return float(text) if text not in (None, "", "N/A") else 0.0
    except ValueError:
        return 0.0


def load_folder_extras(data: RunData, folder: Path, sar_file: Path | None) -> None:
    """What only the run folder holds: failure messages and the sar file."""
    final = folder / "stats.json"
    fail_csv = folder / "locust_failures.csv"
    if final.exists():
        data.failures = json.loads(final.read_text())["failures"]
    elif fail_csv.exists():
        with open(fail_csv, newline="") as f:
            data.failures = [{"method": r["Method"], "name": r["Name"], "error": r["Error"],
                              "occurrences": int(_num(r["Occurrences"]))} for r in csv.DictReader(f)]
    sar_path = sar_file or folder / "sar.data"
    if sar_path.exists():
        try:
            data.sar = sar.read(sar_path)
        except sar.SarError as exc:
            print(f"warning: {exc}", file=sys.stderr)


def _requests_from_csv(data: RunData, stats: Path) -> None:
    with open(stats, newline="") as f:
        for r in csv.DictReader(f):
            data.requests.append({"type": r["Type"], "name": r["Name"], "requests": int(_num(r["Request Count"])),
                                  "failures": int(_num(r["Failure Count"])), "avg_ms": _num(r["Average Response Time"]),
                                  "p50_ms": _num(r.get("50%")), "p95_ms": _num(r.get("95%")),
                                  "p99_ms": _num(r.get("99%")), "max_ms": _num(r["Max Response Time"]),
                                  "rps": _num(r["Requests/s"])})


def load_csv(run_id: str, folder: Path) -> RunData:
    history = folder / "locust_stats_history.csv"
    stats = folder / "locust_stats.csv"
    if not stats.exists() and not (folder / "stats.json").exists():
        raise ReportError(f"run folder {folder} has no locust_stats.csv; expected a run made by loadtesting.run "
                          "(or one stored in ClickHouse)")
    run = json.loads((folder / "run.json").read_text()) if (folder / "run.json").exists() else {}
    data = RunData(run_id, "csv", kind=run.get("kind", "load"))
    data.meta = {"started": run.get("started"), "ended": run.get("ended"), "command": run.get("command"),
                 "versions": run.get("versions", {}), "exit_code": run.get("exit_code"),
                 "duration_s": run.get("duration_s")}
    rows = read_request_stats(folder)
    data.intervals = [r for r in rows if r["request_type"] == "" and r["name"] == "Aggregated"]
    if data.intervals:  # the monitor's intervals: the same timeline as in ClickHouse
        data.timeline = [{"time": r["time_ms"] / 1000, "users": r["users"], "rps": r["rps"],
                          "fail_rps": r["fail_rps"], "p95": r["p95_ms"]}
                         for r in data.intervals if r.get("timing", "service") == "service"]
    elif history.exists():
        with open(history, newline="") as f:
            for r in csv.DictReader(f):
                if r["Name"] == "Aggregated":
                    data.timeline.append({"time": _num(r["Timestamp"]), "users": _num(r["User Count"]),
                                          "rps": _num(r["Requests/s"]), "fail_rps": _num(r["Failures/s"]),
                                          "p95": _num(r.get("95%"))})
    final = folder / "stats.json"  # complete; Locust's CSV misses the run's last second
    merged = merge_rows(rows, data.timeline)
    if final.exists():
        body = json.loads(final.read_text())
        data.requests = body["requests"]
        data.planned = body.get("from_planned_start") or merged.get("planned", [])
    elif merged.get("service"):
        data.requests, data.planned = merged["service"], merged.get("planned", [])
    else:
        _requests_from_csv(data, stats)
    samples = folder / "samples.jsonl"
    if samples.exists():
        for line in samples.read_text().splitlines():
            try:
                s = json.loads(line)
            except json.JSONDecodeError:
                continue
            if s.get("backlog") is not None:
                data.lag.setdefault("backlog (events)", []).append((s["time"], float(s["backlog"])))
            for source, sample in (s.get("stats") or {}).items():
                if isinstance(sample, dict):
                    for key in ("lag_seconds", "lag"):
                        if isinstance(sample.get(key), (int, float)):
                            data.lag.setdefault(f"{source} {key}", []).append((s["time"], float(sample[key])))
    if (folder / "capacity.json").exists():
        data.capacity = json.loads((folder / "capacity.json").read_text())
    data.phases = phase_mod.read(folder)
    return data


def _ms(v: float) -> float | int:
    """A percentile as Locust gives it: its bucket (an int), or the maximum when that is lower."""
    return int(v) if float(v).is_integer() else v


def read_request_stats(folder: Path) -> list[dict]:
    """The monitor's interval rows kept in the run folder (request_stats.jsonl), histograms included."""
    path = folder / REQUEST_STATS_FILE
    rows = []
    if path.exists():
        for line in path.read_text().splitlines():
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError:
                continue  # a line cut by a crash: the rest still counts
    return rows


def _merged_row(rtype: str, name: str, group: list[dict], duration: float) -> dict:
    n = sum(r["requests"] for r in group)
    top = max((r["max_ms"] for r in group), default=0)
    hist = histogram.merge((r.get("buckets") or [], r.get("counts") or []) for r in group)
    return {"type": rtype, "name": name, "requests": n, "failures": sum(r["failures"] for r in group),
            "avg_ms": sum(r["avg_ms"] * r["requests"] for r in group) / max(n, 1), "max_ms": top,
            **histogram.summary(hist, top), "rps": n / duration if duration else 0.0}


def merge_rows(rows: list[dict], timeline: list[dict]) -> dict[str, list[dict]]:
    """Per timing, the whole run per request name: the folder's interval histograms merged in Python."""
    duration = (timeline[-1]["time"] - timeline[0]["time"]) if len(timeline) > 1 else 0
    groups: dict[tuple[str, str, str], list[dict]] = {}
    for r in rows:
        groups.setdefault((r.get("timing", "service"), r["request_type"], r["name"]), []).append(r)
    out: dict[str, list[dict]] = {}
    for (timing, rtype, name), group in sorted(groups.items(), key=lambda kv: (kv[0][0], kv[0][1] or "~", kv[0][2])):
        out.setdefault(timing, []).append(_merged_row(rtype, name, group, duration))
    return out


def load_clickhouse(run_id: str, url: str, database: str) -> RunData | None:
    """The run from ClickHouse, or None when ClickHouse is unreachable or does not know the run."""
    from plumbing import chclient

    try:
        client = chclient.connect(url)
        q = {k: v.format(db=database) for k, v in QUERIES.items()}
        meta = client.execute(q["meta"], {"run": run_id})
    except Exception:  # noqa: BLE001 - unreachable or no tables: the folder is the fallback
        return None
    if not meta:
        return None
    (started, ended, locustfile, host, tags, options, versions, exit_code, drained, drain_s, max_backlog,
     extra) = meta[0]
    data = RunData(run_id, "clickhouse", kind=_kind(locustfile), clickhouse=(url, database))
    data.meta = {"started": started.replace(tzinfo=UTC).isoformat(timespec="seconds"),
                 "ended": ended.replace(tzinfo=UTC).isoformat(timespec="seconds") if ended.year > 1971 else None,
                 "host": host, "tags": list(tags), "options": json.loads(options or "{}"),
                 "versions": json.loads(versions or "{}"), "exit_code": exit_code,
                 "drained": bool(drained), "drain_seconds": drain_s, "max_backlog": max_backlog,
                 "extra": json.loads(extra or "{}")}
    for t, users, rps, fail_rps, p95 in client.execute(q["timeline"], {"run": run_id}):
        data.timeline.append({"time": t / 1000, "users": users, "rps": rps, "fail_rps": fail_rps, "p95": p95})
    duration = (data.timeline[-1]["time"] - data.timeline[0]["time"]) if len(data.timeline) > 1 else 0
    merged = sorted(client.execute(q["requests"], {"run": run_id}), key=lambda r: (r[0], r[1] or "~", r[2]))
    for timing, rtype, name, n, f, avg, mx, timed, p50, p95, p99 in merged:
        row = {"type": rtype or "", "name": name, "requests": n, "failures": f, "avg_ms": avg,
               # No histogram (a run stored before they were): no percentile rather than a wrong one.
               "p50_ms": _ms(p50) if timed else None, "p95_ms": _ms(p95) if timed else None,
               "p99_ms": _ms(p99) if timed else None,
               "max_ms": mx, "rps": n / duration if duration else 0.0}
        (data.planned if timing == "planned" else data.requests).append(row)
    for t, source, metric, value in client.execute(q["lag"], {"run": run_id}):
        name = "backlog (events)" if source == "monitor" else f"{source} {metric}"
        data.lag.setdefault(name, []).append((t / 1000, value))
    records = []
    for _t, event_type, extra in client.execute(q["events"], {"run": run_id}):
        body = json.loads(extra or "{}")
        if event_type == "capacity":
            data.capacity = body
        elif event_type == "phase":
            records.append({"action": "window", **body})
        elif event_type == "phase_mark":
            records.append(body)
    data.phases = phase_mod.from_records(records)
    client.disconnect()
    return data


def load(run_id: str, results: Path = RESULTS, source: str = "auto", clickhouse_url: str | None = None,
         database: str = "event_sink", sar_file: Path | None = None) -> RunData:
    folder = results / run_id
    data = None
    if source in ("auto", "clickhouse") and clickhouse_url:
        data = load_clickhouse(run_id, clickhouse_url, database)
        if data is None and source == "clickhouse":
            raise ReportError(f"run {run_id!r} not found in ClickHouse at {clickhouse_url.split('@')[-1]} "
                              f"(database {database})")
        if data is not None and folder.is_dir() and (folder / "run.json").exists():
            run = json.loads((folder / "run.json").read_text())
            data.kind = run.get("kind", data.kind)
            data.meta.setdefault("command", run.get("command"))
            if not data.phases:
                data.phases = phase_mod.read(folder)
            if data.capacity is None and (folder / "capacity.json").exists():
                data.capacity = json.loads((folder / "capacity.json").read_text())
    if data is None:
        if not folder.is_dir():
            raise ReportError(f"run {run_id!r}: no folder {folder} and not found in ClickHouse; "
                              "expected a run id from results/")
        data = load_csv(run_id, folder)
    if folder.is_dir() or sar_file:
        load_folder_extras(data, folder, sar_file)
    return data


# -- analysis --------------------------------------------------------------------------------------
def window_latency(data: RunData, start: float, end: float | None) -> dict[str, dict]:
    """Per timing (service, planned): requests and merged percentiles of the intervals ending in (start, end].

    Intervals are the monitor's (--monitor-interval), so a window's edges are as fine as that.
    """
    t0, t1 = int(round(start * 1000)), int(round(end * 1000)) if end is not None else 2**63 - 1
    out: dict[str, dict] = {}
    if data.clickhouse:
        from plumbing import chclient

        url, database = data.clickhouse
        try:
            client = chclient.connect(url)
            rows = client.execute(QUERIES["window"].format(db=database), {"run": data.run_id, "t0": t0, "t1": t1})
            client.disconnect()
        except Exception as exc:  # noqa: BLE001 - the report is still written, without these figures
            print(f"warning: no phase percentiles from ClickHouse: {exc}", file=sys.stderr)
            return out
        for timing, n, f, _avg, mx, timed, p50, p95, p99 in rows:
            if timed:
                out[timing] = {"requests": n, "failures": f, "max_ms": mx, "p50_ms": _ms(p50), "p95_ms": _ms(p95),
                               "p99_ms": _ms(p99)}
        return out
    for timing in TIMINGS:
        group = [r for r in data.intervals if r.get("timing", "service") == timing and t0 < r["time_ms"] <= t1]
        hist = histogram.merge((r.get("buckets") or [], r.get("counts") or []) for r in group)
        if sum(hist.values()):
            top = max(r["max_ms"] for r in group)
            out[timing] = {"requests": sum(r["requests"] for r in group),
                           "failures": sum(r["failures"] for r in group), "max_ms": top,
                           **histogram.summary(hist, top)}
    return out


def phase_figures(data: RunData, phase: phase_mod.Phase) -> dict:
    """Locust and sar figures over a phase's window: rates averaged, percentiles of the merged histograms."""
    end = phase.end if phase.end is not None else float("inf")
    points = [p for p in data.timeline if phase.start <= p["time"] <= end]
    out: dict = {}
    if points:
        out["users"] = max(p["users"] for p in points)
        out["rps"] = sum(p["rps"] for p in points) / len(points)
        out["fail_rps"] = sum(p["fail_rps"] for p in points) / len(points)
    latency = window_latency(data, phase.start, phase.end)
    if "service" in latency:
        out["p95_ms"] = latency["service"]["p95_ms"]
    if "planned" in latency:
        out["p95_planned_ms"] = latency["planned"]["p95_ms"]
    for key in ("users", "rps", "requests", "failures", "p95_ms"):
        if key in phase.figures:
            out[key] = phase.figures[key]  # the capacity search measured its window exactly
    if data.sar:
        out["sar"] = sar.summarize(data.sar, phase.start, phase.end)
    return out


def _fmt(v, digits: int = 1) -> str:
    if v is None:
        return "–"
    if isinstance(v, float):
        return f"{v:,.{digits}f}"
    return f"{v:,}" if isinstance(v, int) else str(v)


def _served(f: dict) -> float | None:
    """Requests/s answered without failure in a phase."""
    if not f or f.get("rps") is None:
        return None
    if "failures" in f and f.get("requests"):
        return f["rps"] * (1 - f["failures"] / f["requests"])
    return max(f["rps"] - (f.get("fail_rps") or 0.0), 0.0)


def open_model_finding(data: RunData) -> str | None:
    """Open-model runs: the plan against what was started; drops mean the generator was the limit."""
    om = (data.meta.get("extra") or {}).get("open_model")
    dropped = sum(r["requests"] for r in data.requests if r["type"] == "DROPPED")
    if om:
        dropped = max(dropped, om["dropped"])  # the DROPPED rows may miss a worker's last report
        text = (f"Open model: {om['planned']:,} iterations were planned over {_fmt(om['duration_s'])} s (target "
                f"{_fmt(om['target_rate'])}/s) and {om['started']:,} started ({_fmt(om['achieved_rate'])}/s)")
    elif dropped:
        text = "Open model"
    else:
        return None
    if not dropped:
        return text + "; none was dropped."
    return (text + f"; **{dropped:,} iterations were dropped** because no user was free at their planned instant: "
            "the generator was the limit, not the system under test. Raise the users (-u) so the pool covers "
            "rate × latency, or add processes when the generator's CPU is saturated.")


def findings(data: RunData, figures: dict[str, dict]) -> list[str]:
    """Plain-language paragraphs drawn from the figures (at least two)."""
    paras = []
    total = next((r for r in data.requests if r["name"] == "Aggregated"), None)
    events = [r for r in data.requests if r["type"] == "EVENT"]  # tracking runs: one request per event
    top_failure = max(data.failures, key=lambda f: f["occurrences"], default=None)
    cap = data.capacity
    if cap and cap.get("steps"):
        text = (f"The capacity search ran {len(cap['steps'])} steps. The highest load served without failures "
                f"was **{cap['max_sustainable_users']} users** ({_fmt(cap['max_sustainable_rps'])} requests/s, "
                f"p95 {_fmt(cap['p95_ms_at_max'], 0)} ms).")
        if cap.get("first_failing_users") is not None:
            text += (f" Failures started at {cap['first_failing_users']} users ({cap['failure_reason']}), so the "
                     f"limit lies between the two, known to within {cap['resolution']} users.")
        else:
            text += " No step failed up to the search's user ceiling: the limit is higher than what was tried."
        paras.append(text)
    elif events:
        sent = sum(r["requests"] for r in events)
        failed = sum(r["failures"] for r in events)
        achieved = (data.meta.get("extra") or {}).get("events_per_second_achieved")
        target = float((data.meta.get("options") or {}).get("events_per_second") or 0)
        if achieved:
            rate = f"at {_fmt(achieved)} events/s" + (f" (target {target:g})" if target else "")
        else:
            rate = f"({_fmt(sum(r['rps'] for r in events))} events/s averaged over the whole run, drain included)"
        text = f"The generator sent {sent:,} tracking events {rate}; {failed:,} failed to send."
        stored = sum(r["requests"] - r["failures"] for r in data.requests if r["type"] == "E2E")
        if any(r["type"] == "E2E" for r in data.requests):
            missing = sent - failed - stored
            text += (f" {stored:,} of them were found in ClickHouse as xAPI statements"
                     + (f"; {missing:,} never arrived." if missing > 0 else ", none lost."))
        paras.append(text)
    elif total:
        peak = max((p["users"] for p in data.timeline), default=0)
        ratio = total["failures"] / total["requests"] if total["requests"] else 0
        paras.append(f"The run reached {_fmt(peak, 0)} users and served {total['requests']:,} requests at "
                     f"{_fmt(total['rps'])} requests/s on average, with {total['failures']:,} failures "
                     f"({ratio:.2%}) and a p95 of {_fmt(total['p95_ms'], 0)} ms. No capacity search was run, so "
                     "this is the behaviour at this load, not the limit (`--capacity-search` finds it).")
    if top_failure:
        paras.append(f"The most frequent failure was `{top_failure['error'][:160]}` on {top_failure['method']} "
                     f"{top_failure['name']} ({top_failure['occurrences']:,} times). It names what gave way first.")
    low = figures.get(phase_mod.MINIMAL, {})
    high = figures.get(phase_mod.MAX_SUSTAINABLE, {})
    fail = figures.get(phase_mod.FAILURE, {})
    if low and high and low.get("users") and high.get("users"):
        growth = high["users"] / low["users"] if low["users"] else 0
        rps_growth = (high.get("rps") or 0) / low["rps"] if low.get("rps") else 0
        text = (f"From minimal load ({_fmt(low['users'], 0)} users) to the maximum sustainable load "
                f"({_fmt(high['users'], 0)} users) users grew {growth:.1f}× and throughput {rps_growth:.1f}×, "
                f"while p95 went from {_fmt(low.get('p95_ms'), 0)} to {_fmt(high.get('p95_ms'), 0)} ms.")
        served_high = _served(high)
        served_fail = _served(fail)
        if served_fail is not None and served_high:
            more = served_fail / served_high
            text += (f" At the failing load the successfully served requests/s were {more:.2f}× those of the "
                     "sustainable load: "
                     + ("the system was saturated, more users only queued and failed." if more < 1.1 else
                        "throughput still grew, so failures came from a hard limit (a cap, a pool, a timeout) "
                        "rather than from saturation."))
        paras.append(text)
    limit_found = bool((cap and cap.get("first_failing_users") is not None) or (total and total["failures"]))
    s = (fail or high or {}).get("sar") if (fail or high) else None
    if s is None and data.sar:
        s = sar.summarize(data.sar)
    if s and s.get("cpu_idle") is not None:
        busy = 100 - s["cpu_idle"]
        where = "the failure load" if fail.get("sar") else "the run"
        if busy >= 85:
            verdict = "the machine's CPU was the bottleneck: more capacity needs more cores or cheaper requests"
        elif (s.get("cpu_iowait") or 0) >= 20:
            verdict = "the machine waited on its disk: faster storage or fewer writes per request would help"
        elif limit_found:
            verdict = ("the CPU had headroom, so the limit is a configured one (worker processes, connection "
                       "pools, queue sizes) or on another machine; raising it is the cheapest gain")
        else:
            verdict = "the CPU had headroom at this load, so the machine itself was not what limited the run"
        paras.append(f"During {where} the CPU was {busy:.0f}% busy ({_fmt(s['cpu_user'])}% user, "
                     f"{_fmt(s['cpu_system'])}% system, {_fmt(s['cpu_iowait'])}% iowait), memory "
                     f"{_fmt(s['mem_used_pct'])}% used and the disks wrote {_fmt(s['disk_write_kBps'])} kB/s: {verdict}.")
    backlog = data.lag.get("backlog (events)")
    if backlog:
        peak = max(v for _, v in backlog)
        last = backlog[-1][1]
        paras.append(f"The pipeline's backlog peaked at {peak:,.0f} events and was {last:,.0f} at the last sample"
                     + (f"; it drained {data.meta.get('drain_seconds')} s after the load stopped."
                        if data.meta.get("drained") else "."))
    arrival = open_model_finding(data)
    if arrival:
        paras.append(arrival)
    text = planned_finding(data)
    if text:
        paras.append(text)
    e2e = [r for r in data.requests if r["type"] == "E2E"]
    for r in e2e:
        paras.append(f"End-to-end latency of {r['name']} over {r['requests']:,} events: p95 {_fmt(r['p95_ms'], 0)} ms, "
                     f"average {_fmt(r['avg_ms'], 0)} ms.")
    if len(paras) < 2:
        paras.append("Too little was recorded for more findings: run longer, or with `--capacity-search`, "
                     "so each phase has figures.")
    return paras


def planned_finding(data: RunData) -> str | None:
    """Service time against response time from the planned start, for open-model requests."""
    planned = next((r for r in data.planned if r["name"] == "Aggregated"), None)
    if not planned or planned.get("p95_ms") is None:
        return None
    open_model = [r for r in data.planned if r["name"] != "Aggregated"]
    names = {(r["type"], r["name"]) for r in open_model}
    service = [r for r in data.requests if (r["type"], r["name"]) in names]
    if len(service) == 1:
        svc = service[0]
    else:  # several names: compare with the service time of the same requests only when all are open-model
        svc = next((r for r in data.requests if r["name"] == "Aggregated"), None)
        if svc is None or svc["requests"] != planned["requests"]:
            svc = None
    text = (f"{planned['requests']:,} open-model requests were also timed from their planned start: p95 "
            f"{_fmt(planned['p95_ms'], 0)} ms (p50 {_fmt(planned['p50_ms'], 0)}, p99 {_fmt(planned['p99_ms'], 0)}, "
            f"max {_fmt(planned['max_ms'], 0)} ms)")
    if svc is None or svc.get("p95_ms") is None:
        return text + "; the table of response times from the planned start compares them per request name."
    gap = planned["p95_ms"] - svc["p95_ms"]
    text += (f", against a p95 service time (from sending) of {_fmt(svc['p95_ms'], 0)} ms: the difference, "
             f"{_fmt(gap, 0)} ms at p95 ({_fmt(planned['p99_ms'] - svc['p99_ms'], 0)} ms at p99), is time spent "
             "waiting to be sent. ")
    if gap > max(1.0, 0.1 * svc["p95_ms"]):
        text += ("Requests started late, so service time alone understates what users waited (coordinated "
                 "omission): the generator or its users could not keep up with the planned rate, and the "
                 "response time from the planned start is the figure to hold against an SLO.")
    else:
        text += "Requests left close to their planned instants: service time tells the whole story here."
    return text


# -- charts ---------------------------------------------------------------------------------------
PHASE_COLOURS = {phase_mod.MINIMAL: "#2ca02c", phase_mod.MAX_SUSTAINABLE: "#1f77b4", phase_mod.FAILURE: "#d62728"}


def _shade(ax, data: RunData, t0: float) -> None:
    for p in data.phases:
        end = p.end if p.end is not None else (data.timeline[-1]["time"] if data.timeline else p.start)
        ax.axvspan(p.start - t0, end - t0, color=PHASE_COLOURS.get(p.name, "#999999"), alpha=0.15, label=p.name)


def charts(data: RunData, out: Path) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out.mkdir(parents=True, exist_ok=True)
    made = []
    if not data.timeline:
        return made
    t0 = data.timeline[0]["time"]
    x = [p["time"] - t0 for p in data.timeline]

    fig, axes = plt.subplots(4, 1, figsize=(10, 10), sharex=True)
    panels = [("users", "users", "#444444"), ("rps", "requests/s", "#1f77b4"),
              ("fail_rps", "failures/s", "#d62728"), ("p95", "p95 ms", "#ff7f0e")]
    for ax, (key, label, colour) in zip(axes, panels, strict=True):
        ax.plot(x, [p[key] for p in data.timeline], color=colour, linewidth=1.2)
        ax.set_ylabel(label)
        ax.grid(alpha=0.3)
        _shade(ax, data, t0)
    handles, labels = axes[0].get_legend_handles_labels()
    if handles:
        axes[0].legend(dict(zip(labels, handles, strict=False)).values(), dict(zip(labels, handles,
                       strict=False)).keys(), loc="upper left", fontsize=8)
    axes[-1].set_xlabel("seconds since start")
    fig.suptitle(f"Run {data.run_id}")
    fig.tight_layout()
    path = out / "load.png"
    fig.savefig(path, dpi=90)
    plt.close(fig)
    made.append(path)

    if data.lag:
        fig, ax = plt.subplots(figsize=(10, 3.5))
        for name, series in data.lag.items():
            ax.plot([t - t0 for t, _ in series], [v for _, v in series], label=name, linewidth=1.2)
        _shade(ax, data, t0)
        made.append(_finish(fig, ax, "seconds since start", "lag", out / "lag.png"))

    if data.capacity and data.capacity.get("steps"):
        steps = data.capacity["steps"]
        fig, ax = plt.subplots(figsize=(10, 3.5))
        ordered = sorted(steps, key=lambda s: s["users"])
        ax.plot([s["users"] for s in ordered], [s["rps"] for s in ordered], marker="o", color="#1f77b4")
        for s in ordered:
            ax.annotate("ok" if s["ok"] else "fail", (s["users"], s["rps"]), fontsize=7,
                        color="#2ca02c" if s["ok"] else "#d62728", textcoords="offset points", xytext=(0, 6))
        ax.axvline(data.capacity["max_sustainable_users"], color="#2ca02c", linestyle="--", label="max sustainable")
        made.append(_finish(fig, ax, "users", "requests/s", out / "capacity.png"))
    return made


def _finish(fig, ax, xlabel: str, ylabel: str, path: Path) -> Path:
    import matplotlib.pyplot as plt

    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path


# -- markdown ----------------------------------------------------------------------------------------
def _table(header: list[str], rows: list[list]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(_fmt(v) if not isinstance(v, str) else v for v in row) + " |" for row in rows]
    return lines


def _when(t: float) -> str:
    return datetime.fromtimestamp(t, UTC).strftime("%H:%M:%S")


def options_from_command(command: list[str]) -> dict:
    """`--some-option value` pairs of a recorded command line (run.json), keyed as Locust's dests."""
    opts: dict = {}
    for i, arg in enumerate(command):
        if arg.startswith("--") and i + 1 < len(command) and not command[i + 1].startswith("--"):
            opts[arg[2:].replace("-", "_")] = command[i + 1]
    return opts


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
        ("Exit code", _fmt(meta.get("exit_code"))),
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
    if data.capacity and data.capacity.get("steps"):
        cap = data.capacity
        md += ["## Capacity", "",
               f"Maximum sustainable load: **{cap['max_sustainable_users']} users**, "
               f"{_fmt(cap['max_sustainable_rps'])} requests/s, p95 {_fmt(cap['p95_ms_at_max'], 0)} ms "
               f"(resolution {cap['resolution']} users).", ""]
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
        if data.sar:
            md += ["### System activity (sar) per phase", ""]
            keys = [("cpu_user", "CPU user %"), ("cpu_system", "CPU system %"), ("cpu_iowait", "iowait %"),
                    ("cpu_idle", "idle %"), ("mem_used_pct", "memory used %"), ("disk_tps", "disk IO/s"),
                    ("disk_write_kBps", "disk write kB/s"), ("net_rx_kBps", "net rx kB/s"),
                    ("net_tx_kBps", "net tx kB/s"), ("loopback_kBps", "loopback kB/s")]
            md += _table(["phase", *[label for _, label in keys]],
                         [[p.name, *[figures[p.name]["sar"].get(k) for k, _ in keys]] for p in data.phases]) + [""]
    elif data.sar:
        s = sar.summarize(data.sar)
        md += ["## System activity (sar), whole run", ""]
        md += _table(["figure", "average"], [[k, v] for k, v in s.items()]) + [""]
    return md


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
    data = page.data
    md: list[str] = []
    if data.failures:
        md += ["## Failures", ""]
        md += _table(["method", "name", "error", "occurrences"],
                     [[f["method"], f["name"], f["error"][:200].replace("|", "\\|"), f["occurrences"]]
                      for f in sorted(data.failures, key=lambda f: -f["occurrences"])[:20]]) + [""]
    return md


def section_lag(page: Page) -> list[str]:
    """The pipeline lag series: peak and last."""
    data = page.data
    md: list[str] = []
    if data.lag:
        md += ["## Pipeline lag", ""]
        md += _table(["series", "peak", "last"], [[k, max(v for _, v in s), s[-1][1]] for k, s in data.lag.items()])
        md += [""]
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
            section_failures, section_lag, section_charts]


def render(data: RunData, folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    page = Page(data, {p.name: phase_figures(data, p) for p in data.phases}, charts(data, folder / "charts"))
    md = [f"# {data.kind.upper()} load test results — run {data.run_id}", ""]
    for section in SECTIONS:
        md += section(page)
    path = folder / f"{data.kind}-results.md"
    path.write_text("\n".join(md))
    return path


def latest_run(results: Path) -> str | None:
    runs = sorted(p.name for p in results.iterdir() if (p / "run.json").exists()) if results.is_dir() else []
    return runs[-1] if runs else None


def main(argv: list[str] | None = None) -> int:

    parser = argparse.ArgumentParser(prog="python -m loadtesting.report", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run_id", nargs="?", default="", help="run id (default: the newest run in results/)")
    parser.add_argument("--results", type=Path, default=RESULTS, help="folder of run folders (default results/)")
    parser.add_argument("--source", choices=("auto", "clickhouse", "csv"), default="auto",
                        help="where figures come from (auto: ClickHouse when it has the run, else the folder)")
    parser.add_argument("--clickhouse-url", default=settings.CLICKHOUSE_URL.resolve())
    parser.add_argument("--monitor-database", default=settings.MONITOR_DATABASE.resolve())
    parser.add_argument("--sar-file", type=Path, help="sar file of the system under test, recorded on its host")
    parser.add_argument("--out", type=Path, help="folder for the report (default: the run folder)")
    args = parser.parse_args(argv)
    run_id = args.run_id or latest_run(args.results)
    if not run_id:
        print(f"error: no run in {args.results}; expected a run id (make demo or loadtesting.run makes one)",
              file=sys.stderr)
        return 2
    if args.sar_file and not args.sar_file.is_file():
        print(f"error: --sar-file {args.sar_file}: not a file", file=sys.stderr)
        return 2
    try:
        data = load(run_id, args.results, args.source, None if args.source == "csv" else args.clickhouse_url,
                    args.monitor_database, args.sar_file)
    except ReportError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    path = render(data, args.out or args.results / run_id)
    print(f"report of run {run_id} (from {data.source}): {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
