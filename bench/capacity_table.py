"""The Aspects capacity table (docs/capacity.md): per configuration of the reference pipeline, the
capacity search (`make pipeline-capacity`, default search options) and bench/pipeline.py's drain
measurement of the same configuration, run back to back, with the machine's load beside each.

    python -m bench.capacity_table                     # every backend × workers 1, 2 × batch 100, 1000
    CAPACITY_CONFIGS=redis_bus:1:100,celery:1:100 python -m bench.capacity_table

Both methods take the same events: the realistic mix (`--event-mix realistic`) about 100 learners.
The search's generator shares this machine's cores with the pipeline; the drain has the pipeline
alone (its events were queued before it started). A third figure tells the two apart: the drain
again, while the generator offers the search's sustained rate elsewhere on the same backend (its own
stream, queue, topic or file, which no pipeline reads), with the monitor sampling as in the search:
the drain with the search's company on the machine. CAPACITY_SKIP_SEARCH=<rate> measures only the
two drains, with the company at that rate. Each row is printed (and appended to
CAPACITY_TABLE_OUT, default results/capacity-table.md) as soon as it is measured, so a partial table
survives an interrupted run. The stack runs on free ports.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench.pipeline import REFERENCED, pipeline_rate
from stack import Stack

REPO = Path(__file__).resolve().parent.parent
OUT = Path(os.environ.get("CAPACITY_TABLE_OUT", REPO / "results" / "capacity-table.md"))


def configs() -> list[tuple[str, int, int]]:
    given = os.environ.get("CAPACITY_CONFIGS", "")
    if given:
        out = []
        for item in given.split(","):
            backend, workers, batch = item.split(":")
            out.append((backend, int(workers), int(batch)))
        return out
    # The cheapest full row first: every backend at 1 worker and batch 100, then the rest.
    order = [(w, b) for w, b in ((1, 100), (2, 100), (1, 1000), (2, 1000))]
    return [(backend, w, b) for w, b in order for backend in REFERENCED if not (backend == "vector" and w == 2)]


def load() -> str:
    one, five, _ = os.getloadavg()
    return f"{one:.1f}/{five:.1f}"


def search(backend: str, workers: int, batch: int, env: dict) -> tuple[dict | None, float, str]:
    t0 = time.monotonic()
    tag = f"s{backend.replace('_', '')}{workers}x{batch}t{int(time.time()) % 100000}"
    done = subprocess.run([sys.executable, "-m", "loadtesting.pipeline_run", backend, "--workers", str(workers),
                           "--batch", str(batch), "--capacity", "--event-mix", "realistic",
                           # A stream/topic and a group of their own per search: one broker serves the
                           # whole table; a group whose former members left rejoins slowly on some brokers
                           # (Tansu: not at all with 2 members, docs/capacity.md), and a new group on a
                           # former search's topic would first read that search's events (it did: 200,000).
                           "--group", f"erb-{tag}", "--prefix", tag],
                          cwd=REPO, env=env, capture_output=True, text=True)
    took = time.monotonic() - t0
    found = re.findall(r"results of run (\S+) \(exit code", done.stdout)
    path = REPO / "results" / found[-1] / "capacity.json" if found else None
    if path is None or not path.exists():
        tail = (done.stdout + done.stderr).strip().splitlines()[-3:]
        return None, took, " / ".join(tail)
    return json.loads(path.read_text()), took, found[-1]


def company(backend: str, rate: float, ep: dict, home: Path) -> subprocess.Popen:
    """The search's generator and monitor at `rate`, into a place of `backend` that no pipeline reads."""
    tag = f"company{os.getpid()}{int(time.time()) % 100000}"
    monitor = ["--monitor-backend", backend]  # sampled as the search samples it
    args = [str(Path(sys.executable).with_name("locust")), "-f", str(REPO / "locustfiles" / "tracking.py"),
            "--headless", "-u", "400", "-r", "400", "--pipeline-backend", backend, "--events-per-second", str(rate),
            "--run-until-killed", "--event-mix", "realistic", "--no-e2e", "--no-sar", *monitor,
            "--celery-broker-url", ep["redis"], "--celery-queue", tag, "--event-bus-redis-url", ep["redis"],
            "--kafka-bus-brokers", ep["kafka"], "--event-bus-prefix", tag, "--clickhouse-url", ep["clickhouse"],
            "--vector-log-file", str(home / f"{tag}.log"), "--loglevel", "WARNING",
            "--drain-timeout", "0"]  # nothing reads its place: its end must not wait for a drain
    proc = subprocess.Popen(args, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    time.sleep(10)  # its users spawned and sending
    return proc


def drain_with_company(backend: str, workers: int, batch: int, rate: float, ep: dict,
                       home: Path) -> tuple[float | None, float, str]:
    proc = company(backend, rate, ep, home)
    try:
        return pipeline_rate(backend, workers, batch, ep, home)
    finally:
        os.killpg(proc.pid, 15)
        proc.wait(timeout=60)


def row(backend: str, workers: int, batch: int, cap: dict | None, took: float, run: str, load_s: str,
        drain: tuple, load_d: str, with_company: tuple | None) -> str:
    if cap is None:
        s = f"not measured ({run[:120]})"
        lag = p95 = bottleneck = "-"
    else:
        s = f"{cap['sustained_events_per_second']:g}"
        best = next((st for st in cap["steps"] if st["target"] == cap["sustained_events_per_second"]), None)
        lag = f"{best['clickhouse_lag_s']:.1f}" if best and best.get("clickhouse_lag_s") is not None else "-"
        p95 = f"{cap['e2e_p95_ms_at_sustained']:.0f}" if cap.get("e2e_p95_ms_at_sustained") is not None else "-"
        b = cap.get("bottleneck") or {}
        bottleneck = b.get("stage", "none (max rate)") + (f" at {b['step']:g}" if b.get("step") else "")
        if cap.get("lowest_failing_above"):
            s += f" (fails {cap['lowest_failing_above']:g})"
    def fmt(d: tuple | None) -> str:
        if d is None:
            return "-"
        rate, cpu, why = d
        return f"{rate:,.0f} ({cpu:,.0f} µs/ev)" if rate is not None else f"not measured ({why})"

    ratio = f"{cap['sustained_events_per_second'] / drain[0]:.2f}" if cap and drain[0] else "-"
    return (f"| {backend} | {workers} | {batch} | {s} | {lag} | {p95} | {bottleneck} | {took:.0f} s, load {load_s} "
            f"| {fmt(drain)} | load {load_d} | {ratio} | {fmt(with_company)} | {run} |")


def main() -> int:
    header = ("| backend | workers | batch | sustained ev/s (search) | ClickHouse lag s | e2e p95 ms | bottleneck | "
              "search took, load 1/5 min | drain ev/s (pipeline CPU) | drain load | search/drain | "
              "drain beside the generator at the sustained rate | run |\n"
              "|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    OUT.parent.mkdir(parents=True, exist_ok=True)
    with OUT.open("a") as f:
        f.write(f"\n{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, {os.cpu_count()} cores\n{header}\n")
    print(header, flush=True)
    with tempfile.TemporaryDirectory(prefix="capacity-table-") as tmp:
        home = Path(tmp)
        stack = Stack(home / "stack", free_ports=True)
        try:
            eps = stack.start("clickhouse", "redis", "kafka")
            ep = {"clickhouse": eps["clickhouse"].url, "redis": eps["redis"].url, "kafka": eps["kafka"].url}
            env = {**os.environ, "LOCUST_CLICKHOUSE_URL": ep["clickhouse"], "LOCUST_REDIS_URL": ep["redis"],
                   "KAFKA_BROKERS": ep["kafka"]}
            skip = float(os.environ.get("CAPACITY_SKIP_SEARCH", "0"))
            for backend, workers, batch in configs():
                load_s = load()
                cap, took, run = search(backend, workers, batch, env) if not skip else (None, 0.0, "search skipped")
                load_d = load()
                drain = pipeline_rate(backend, workers, batch, ep, home)
                rate = skip or (cap or {}).get("sustained_events_per_second")
                beside = drain_with_company(backend, workers, batch, rate, ep, home) if rate else None
                line = row(backend, workers, batch, cap, took, run, load_s, drain, load_d, beside)
                print(line, flush=True)
                with OUT.open("a") as f:
                    f.write(line + "\n")
        finally:
            stack.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
