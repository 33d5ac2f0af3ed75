"""Soak: HTTP learners, 5,000 MQTT devices and tracking events at 1,000/s, each a Locust run with the
monitor on, at once against a local stack, for DURATION (default 30m; `make bench BENCH=soak DURATION=6m`).

Every minute it prints each Locust process's RSS, open descriptors (files and sockets), threads and
live greenlets (measured inside the process by bench/_soak_probe.py), each run's monitor intervals
and request rate, and the rows the monitors wrote to ClickHouse in that minute. At the end, measured
from the end of the warm-up (SOAK_WARMUP, 120 s) to the last probe: RSS growth (goal < 5 %), growth of
open descriptors and greenlets (goal: none) and monitor intervals missing (goal 0).
Knobs: SOAK_HTTP_USERS (100), SOAK_DEVICES (5000), SOAK_EVENTS_PER_SECOND (1000), SOAK_INTERVAL
(monitor interval, 5 s). Everything (logs, probes, summary.json) stays in .run/soak/<start time>/.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

from plumbing import chclient, settings
from stack import Stack

REPO = Path(__file__).resolve().parent.parent
LOCUST = str(Path(sys.executable).with_name("locust"))
PROBE = str(REPO / "bench" / "_soak_probe.py")
HTTP_USERS = int(os.environ.get("SOAK_HTTP_USERS", "100"))
DEVICES = int(os.environ.get("SOAK_DEVICES", "5000"))
EVENTS_PER_SECOND = int(os.environ.get("SOAK_EVENTS_PER_SECOND", "1000"))
WARMUP = float(os.environ.get("SOAK_WARMUP", "120"))
INTERVAL = float(os.environ.get("SOAK_INTERVAL", "5"))
PROBE_INTERVAL = 30.0
# The monitors' database as Locust resolves it (LOCUST_MONITOR_DATABASE, else the default), passed to
# every run, so the runs write where the queries below read.
DB = settings.MONITOR_DATABASE.resolve()
KINDS = ("http", "mqtt", "tracking")


def seconds(text: str) -> int:
    """Locust's --run-time forms: 90, 90s, 6m, 1h30m."""
    parts = re.fullmatch(r"(?:(\d+)h)?(?:(\d+)m)?(?:(\d+)s?)?", text.strip())
    if not text.strip() or parts is None:
        raise ValueError(f"DURATION {text!r}: expected e.g. 30m, 6m, 90s or 1h30m")
    h, m, s = (int(x or 0) for x in parts.groups())
    return h * 3600 + m * 60 + s


def prepare(stack: Stack) -> dict:
    endpoints = stack.start("clickhouse", "redis", "mosquitto", "site")
    site = endpoints["site"]
    env = {**os.environ, "LAMPISITE_PROFILE": site.extra["profile"], "LAMPISITE_DATA_DIR": site.extra["data_dir"]}
    subprocess.run([sys.executable, str(REPO / "targets" / "lampisite" / "manage.py"), "loadtestingdata"],
                   env=env, check=True, capture_output=True, timeout=600)
    from targets.pipeline.router import Store

    Store(endpoints["clickhouse"].url).ensure_table()  # the monitor's ClickHouse sampler reads the xAPI table
    return endpoints


def commands(ep: dict, run_ids: dict, duration: str) -> dict[str, list[str]]:
    own = {
        "http": ["locustfiles/http.py", "--host", ep["site"].url, "-u", str(HTTP_USERS), "-r", "10"],
        "mqtt": ["locustfiles/mqtt.py", "--mqtt-url", ep["mosquitto"].url, "--mqtt-profile", "normal",
                 "-u", str(DEVICES), "-r", "100"],
        "tracking": ["locustfiles/tracking.py", "--pipeline-backend", "redis_bus", "--event-bus-redis-url",
                     ep["redis"].url, "--run-until-killed", "--events-per-second", str(EVENTS_PER_SECOND),
                     "-u", "50", "-r", "50", "--no-e2e", "--monitor-backend", "redis_bus"],
    }
    out = {}
    for kind, (locustfile, *args) in own.items():
        out[kind] = [LOCUST, "-f", f"{locustfile},{PROBE}", "--headless", "-t", duration, "--run-id", run_ids[kind],
                     "--clickhouse-url", ep["clickhouse"].url, "--monitor-database", DB,
                     "--monitor-interval", str(INTERVAL), "--drain-timeout", "30", "--only-summary", *args]
    return out


def probes(folder: Path, kind: str) -> list[dict]:
    path = folder / f"probe-{kind}.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()] if path.exists() else []


def minute_rows(client, run_ids: dict, t0: float, t1: float) -> dict:
    """Per run: monitor intervals and requests in [t0, t1); rows written to each table."""
    window = {"a": int(t0 * 1000), "b": int(t1 * 1000), "runs": tuple(run_ids.values())}
    ticks = dict(client.execute(
        f"SELECT run_id, count() FROM {DB}.load_test_samples WHERE run_id IN %(runs)s AND source = 'host' "
        "AND metric = 'cpu_percent' AND time_ms >= %(a)s AND time_ms < %(b)s GROUP BY run_id", window))
    requests = dict(client.execute(
        f"SELECT run_id, sum(requests) FROM {DB}.load_test_request_stats WHERE run_id IN %(runs)s "
        "AND name = 'Aggregated' AND timing = 'service' AND time_ms >= %(a)s AND time_ms < %(b)s GROUP BY run_id", window))
    rows = {t: client.execute(f"SELECT count() FROM {DB}.{t} WHERE run_id IN %(runs)s "
                              "AND time_ms >= %(a)s AND time_ms < %(b)s", window)[0][0]
            for t in ("load_test_samples", "load_test_request_stats")}
    return {"ticks": {k: ticks.get(r, 0) for k, r in run_ids.items()},
            "rps": {k: requests.get(r, 0) / (t1 - t0) for k, r in run_ids.items()}, "rows": rows}


def missing_intervals(client, run_id: str) -> tuple[int, int]:
    """(samples, intervals missing): a gap of n intervals between two samples misses n - 1."""
    times = [t for (t,) in client.execute(
        f"SELECT time_ms FROM {DB}.load_test_samples WHERE run_id = %(r)s AND source = 'host' "
        "AND metric = 'cpu_percent' ORDER BY time_ms", {"r": run_id})]
    gaps = [(b - a) / 1000 / INTERVAL for a, b in zip(times, times[1:], strict=False)]
    return len(times), sum(max(0, round(g) - 1) for g in gaps)


def growth(samples: list[dict], since: float) -> dict:
    after = [s for s in samples if s["time"] >= since]
    if len(after) < 2:
        return {}
    first, last = after[0], after[-1]
    return {"probes": len(after), "rss_mb": [round(first["rss"] / 2**20, 1), round(last["rss"] / 2**20, 1)],
            "rss_growth_pct": round(100 * (last["rss"] - first["rss"]) / first["rss"], 2),
            "rss_max_mb": round(max(s["rss"] for s in after) / 2**20, 1),
            **{k: [first[k], last[k], max(s[k] for s in after)] for k in ("fds", "threads", "greenlets")}}


def line(minute: int, folder: Path, stats: dict) -> str:
    parts = [f"min {minute:>3}"]
    for kind in KINDS:
        p = (probes(folder, kind) or [{}])[-1]
        if p:
            parts.append(f"{kind} rss {p['rss'] / 2**20:.0f} MB fds {p['fds']} greenlets {p['greenlets']} "
                         f"{stats['rps'][kind]:.0f}/s ticks {stats['ticks'][kind]}")
    rows = stats["rows"]
    parts.append(f"ClickHouse rows: samples {rows['load_test_samples']}, "
                 f"request stats {rows['load_test_request_stats']}")
    return " | ".join(parts)


def main() -> int:
    duration = os.environ.get("DURATION", "30m")
    try:
        total = seconds(duration)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    stamp = datetime.now(UTC).strftime("%Y%m%d-%H%M%S")
    folder = REPO / ".run" / "soak" / stamp
    folder.mkdir(parents=True)
    run_ids = {k: f"soak-{stamp}-{k}" for k in KINDS}
    stack = Stack(folder / "stack", free_ports=True)
    procs: dict[str, subprocess.Popen] = {}
    try:
        ep = prepare(stack)
        print(f"soak {stamp}: {duration}; {HTTP_USERS} learners, {DEVICES} devices (normal profile), "
              f"{EVENTS_PER_SECOND} tracking events/s (redis_bus); monitor every {INTERVAL:g} s; "
              f"warm-up {WARMUP:.0f} s; files in {folder.relative_to(REPO)}/", flush=True)
        for kind, cmd in commands(ep, run_ids, duration).items():
            env = {**os.environ, "SOAK_PROBE_FILE": str(folder / f"probe-{kind}.jsonl"),
                   "SOAK_PROBE_INTERVAL": str(PROBE_INTERVAL)}
            with open(folder / f"{kind}.log", "wb") as log:
                procs[kind] = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT)
        started = time.time()
        client = chclient.connect(ep["clickhouse"].url)
        minute = 0
        while any(p.poll() is None for p in procs.values()):
            time.sleep(1)
            if time.time() >= started + 60 * (minute + 1):
                minute += 1
                t1 = started + 60 * minute
                print(line(minute, folder, minute_rows(client, run_ids, t1 - 60, t1)), flush=True)
        codes = {k: p.wait() for k, p in procs.items()}
        ended = time.time()
        summary = {"duration": duration, "seconds": round(ended - started), "warmup_s": WARMUP, "exit_codes": codes,
                   "processes": {k: growth(probes(folder, k), started + WARMUP) for k in KINDS},
                   "intervals": {}}
        for kind, rid in run_ids.items():
            n, missing = missing_intervals(client, rid)
            summary["intervals"][kind] = {"samples": n, "missing": missing}
        totals = dict(client.execute(
            f"SELECT run_id, sum(requests) FROM {DB}.load_test_request_stats WHERE run_id IN %(runs)s "
            "AND name = 'Aggregated' AND timing = 'service' GROUP BY run_id", {"runs": tuple(run_ids.values())}))
        summary["requests"] = {k: totals.get(r, 0) for k, r in run_ids.items()}
        client.disconnect()
    finally:
        for p in procs.values():
            if p.poll() is None:
                p.terminate()
                p.wait(timeout=120)
        stack.stop()
    (folder / "summary.json").write_text(json.dumps(summary, indent=1))
    report(summary, total)
    return 0


def report(summary: dict, total: int) -> None:
    print(f"\nsoak summary ({summary['seconds']} s of {total} s; after a {summary['warmup_s']:.0f} s warm-up; "
          f"exit codes {summary['exit_codes']})")
    print(f"{'run':<10}{'RSS MB first→last (max)':>26}{'growth':>9}{'fds':>20}{'greenlets':>22}{'threads':>12}"
          f"{'intervals':>11}{'missing':>9}{'requests':>11}")
    ok = True
    for kind in KINDS:
        g, iv = summary["processes"][kind], summary["intervals"][kind]
        if not g:
            print(f"{kind:<10} too few probes after the warm-up")
            ok = False
            continue
        rss = f"{g['rss_mb'][0]}→{g['rss_mb'][1]} ({g['rss_max_mb']})"
        fds, greenlets, threads = (f"{g[k][0]}→{g[k][1]} ({g[k][2]})" for k in ("fds", "greenlets", "threads"))
        print(f"{kind:<10}{rss:>26}{g['rss_growth_pct']:>8.2f}%{fds:>20}{greenlets:>22}"
              f"{threads:>12}{iv['samples']:>11}{iv['missing']:>9}"
              f"{summary['requests'][kind]:>11,}")
        ok = ok and g["rss_growth_pct"] < 5 and g["fds"][1] <= g["fds"][0] and g["greenlets"][1] <= g["greenlets"][0] \
            and iv["missing"] == 0
    print("goals (RSS growth < 5 %, no growth in open descriptors or greenlets, 0 intervals missing): "
          + ("met" if ok else "NOT met"))


if __name__ == "__main__":
    sys.exit(main())
