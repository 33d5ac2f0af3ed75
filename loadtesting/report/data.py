"""A run's figures, loaded from ClickHouse (the monitor's tables) or from its run folder."""

from __future__ import annotations

import csv
import json
import sys
from dataclasses import dataclass, field
from datetime import UTC
from pathlib import Path
from urllib.parse import urlsplit

from loadtesting import phases as phase_mod
from loadtesting import sar
from monitors.e2e import E2E
from plumbing import histogram, settings

REPO = Path(__file__).resolve().parents[2]
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
    # End-to-end latency per interval: its own rows (request type E2E), never part of Aggregated.
    "e2e": "SELECT time_ms, name, p95_ms FROM {db}.load_test_request_stats WHERE run_id = %(run)s "
           "AND request_type = 'E2E' AND timing = 'service' ORDER BY time_ms",
    "lag": "SELECT time_ms, source, metric, value FROM {db}.load_test_samples WHERE run_id = %(run)s "
           "AND ((source = 'monitor' AND metric = 'backlog') OR metric = 'lag_seconds' OR metric = 'lag') "
           "ORDER BY time_ms",
    "events": "SELECT toUInt32(timestamp), event_type, extra FROM {db}.load_test_runs WHERE run_id = %(run)s "
              "ORDER BY timestamp",
    # Every interval row with its histogram (loadtesting.compare resamples them), and each interval's length.
    "intervals": "SELECT time_ms, interval_s, timing, request_type, name, requests, failures, max_ms, buckets, counts "
                 "FROM {db}.load_test_request_stats WHERE run_id = %(run)s ORDER BY time_ms",
    "interval_lengths": "SELECT time_ms, max(interval_s) FROM {db}.load_test_request_stats "
                        "WHERE run_id = %(run)s AND timing = 'service' GROUP BY time_ms",
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
    e2e: dict[str, list[tuple[float, float]]] = field(default_factory=dict)  # E2E row name -> (time, p95 ms)
    capacity: dict | None = None
    phases: list[phase_mod.Phase] = field(default_factory=list)
    sar: dict | None = None  # sar.read() rows of the load generator's machine (the run folder's sar.data)
    sut_sar: dict[str, dict] = field(default_factory=dict)  # the systems under test's: host -> sar.read() rows
    errors: list[str] = field(default_factory=list)  # the run's `error: …` lines (locust.log): why it was refused


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


def load_folder_extras(data: RunData, folder: Path, sar_files: list[Path] | Path | None = None) -> None:
    """What only the run folder holds: failure messages and the generator's sar file; the systems under
    test's sar files (given, or `sar-*.data` in the folder) beside it, each labelled by its host."""
    final = folder / "stats.json"
    fail_csv = folder / "locust_failures.csv"
    if final.exists():
        data.failures = json.loads(final.read_text())["failures"]
    elif fail_csv.exists():
        with open(fail_csv, newline="") as f:
            data.failures = [{"method": r["Method"], "name": r["Name"], "error": r["Error"],
                              "occurrences": int(_num(r["Occurrences"]))} for r in csv.DictReader(f)]
    log = folder / "locust.log"
    if log.exists():  # the suite's one-line errors, and Locust's own parser's
        with open(log, errors="replace") as f:
            data.errors = [line.strip() for line in f if line.startswith(("error: ", "locust: error: "))][:5]
    if (folder / "sar.data").exists():
        data.sar = _read_sar(folder / "sar.data")
    given = [sar_files] if isinstance(sar_files, Path) else list(sar_files or [])
    for path in [*given, *sorted(folder.glob("sar-*.data"))]:
        rows = _read_sar(path)
        if rows:
            label = sar.hostname(rows) or path.stem
            if label in data.sut_sar:
                label = f"{label} ({path.name})"
            data.sut_sar[label] = rows


def _read_sar(path: Path) -> dict | None:
    try:
        return sar.read(path)
    except sar.SarError as exc:
        print(f"warning: {exc}", file=sys.stderr)
        return None


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
    for r in rows:
        if r["request_type"] == E2E and r.get("timing", "service") == "service":
            data.e2e.setdefault(r["name"], []).append((r["time_ms"] / 1000, r["p95_ms"]))
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
    final = folder / "stats.json"  # complete (the CSV of a folder made before lifecycle.final_csv missed the last second)
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
            # A lag the last sample could not measure (e.g. no consumer group reads the stream): no lag, not 0.
            unknown = [str(v["lag_unknown"]) for v in (s.get("stats") or {}).values()
                       if isinstance(v, dict) and v.get("lag_unknown")]
            data.meta.pop("lag_unknown", None)
            if unknown:
                data.meta["lag_unknown"] = "; ".join(unknown)
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
    if data.meta["extra"].get("lag_unknown"):
        data.meta["lag_unknown"] = data.meta["extra"]["lag_unknown"]
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
    for t, name, p95 in client.execute(q["e2e"], {"run": run_id}):
        data.e2e.setdefault(name, []).append((t / 1000, p95))
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
         database: str = settings.MONITOR_DATABASE.default, sar_file: list[Path] | Path | None = None) -> RunData:
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
def options_from_command(command: list[str]) -> dict:
    """`--some-option value` pairs of a recorded command line (run.json), keyed as Locust's dests."""
    opts: dict = {}
    for i, arg in enumerate(command):
        if arg.startswith("-") and i + 1 < len(command) and not command[i + 1].startswith("--"):
            key = "host" if arg == "-H" else arg[2:].replace("-", "_") if arg.startswith("--") else ""
            if key:
                opts[key] = command[i + 1]
    return opts


def run_options(data: RunData) -> dict:
    """The run's options: as stored in ClickHouse, else as given on its recorded command line."""
    return data.meta.get("options") or options_from_command(data.meta.get("command") or [])


LOOPBACK = ("localhost", "127.", "::1", "0.0.0.0")


def target_is_local(data: RunData) -> bool | None:
    """Whether the system under test ran on the load generator's machine (every address it was given is
    loopback); None when the run recorded none."""
    import backends

    opts = run_options(data)
    if data.kind == "tracking" and opts.get("pipeline_backend") in backends.NAMES:
        value = backends.get(opts["pipeline_backend"]).entry(opts)
        if opts["pipeline_backend"] == "vector":
            return True  # a log file on this machine, which Vector tails here
    elif data.kind == "kafka":
        value = opts.get("kafka_brokers")
    elif data.kind == "mqtt":
        value = opts.get("mqtt_url")
    else:
        value = data.meta.get("host") or opts.get("host")
    hosts = [urlsplit(part if "://" in part else f"//{part}").hostname
             for part in str(value or "").split(",") if part.strip()]
    if not hosts or None in hosts:
        return None
    return all(h.startswith(LOOPBACK) for h in hosts)



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
    if data.sut_sar:
        out["sut_sar"] = {host: sar.summarize(rows, phase.start, phase.end) for host, rows in data.sut_sar.items()}
    return out




def latest_run(results: Path) -> str | None:
    runs = sorted(p.name for p in results.iterdir() if (p / "run.json").exists()) if results.is_dir() else []
    return runs[-1] if runs else None
