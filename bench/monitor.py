"""Monitor benchmark: sample cost against table size, monitor CPU, sink throughput.

1. ClickHouse sampler cost with 100k, 1M and 10M rows in the xAPI table (goal: ≤ 50 ms per sample,
   flat in table size), next to the reference monitor's `count(*) … FINAL` query.
2. CPU of the monitor sampling every second (goal: ≤ 1 % of a core).
3. Sink rows/s against `clickhouse-client` bulk-inserting the same rows (TSV), as a ratio.
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from monitors import clickhouse as ch_sampler
from monitors import host, schema
from monitors.sink import Sink
from plumbing import chclient
from stack import Stack

SIZES = [int(x) for x in os.environ.get("BENCH_XAPI_ROWS", "100000,1000000,10000000").split(",")]
REFERENCE = "SELECT count(*), max(emission_time), now() FROM xapi.xapi_events_all FINAL"


def timed(fn, n: int = 15) -> float:
    times = []
    for _ in range(n):
        t0 = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t0) * 1000)
    return statistics.median(times)


def sample_cost(url: str, client) -> list[tuple[int, float, float]]:
    client.execute("CREATE DATABASE IF NOT EXISTS xapi")
    client.execute("CREATE TABLE IF NOT EXISTS xapi.xapi_events_all (event_id UUID, emission_time DateTime, "
                   "event String) ENGINE = ReplacingMergeTree PARTITION BY toYYYYMM(emission_time) "
                   "ORDER BY (emission_time, event_id)")
    sampler = ch_sampler.Sampler(url)
    out, have = [], 0
    for size in SIZES:
        # Events spread over the last 30 days, 200-byte statements.
        pad = "x" * 180
        client.execute(f"INSERT INTO xapi.xapi_events_all SELECT toUUID('00000000-0000-0000-0000-000000000000'), "
                       f"now() - (number % 2592000), concat('{{\"id\":', toString(number), ',\"p\":\"{pad}\"}}') "
                       f"FROM numbers({size - have})")
        have = size
        out.append((size, timed(sampler.sample), timed(lambda: client.execute(REFERENCE), n=5)))
    sampler.close()
    return out


def monitor_cpu(url: str, seconds: int = 20) -> float:
    samplers = [ch_sampler.Sampler(url), host.Sampler()]
    sink = Sink(url, "bench_monitor", None)
    cpu0, t0 = time.process_time(), time.monotonic()
    next_t = t0
    while time.monotonic() - t0 < seconds:
        for s in samplers:
            sink.add("load_test_stats", {"run_id": "bench", "timestamp": time.time(), "stats": str(s.sample())})
        sink.flush()
        next_t += 1.0
        time.sleep(max(0.0, next_t - time.monotonic()))
    return 100.0 * (time.process_time() - cpu0) / (time.monotonic() - t0)


def sink_vs_client(url: str, port: int, rows: int = 500_000) -> tuple[float, float]:
    data = [{"run_id": "bench", "timestamp": 1764000000 + i // 100, "time_ms": 1764000000000 + i * 10,
             "source": "host", "metric": f"m{i % 50}", "value": i * 0.5} for i in range(rows)]
    sink = Sink(url, "bench_monitor", None, max_rows=rows + 1)
    sink.flush(force=True)  # schema in place before timing
    t0 = time.perf_counter()
    for row in data:
        sink.add("load_test_samples", row)
    assert sink.flush(force=True)
    sink_rate = rows / (time.perf_counter() - t0)
    with tempfile.NamedTemporaryFile("w", suffix=".tsv", delete=False) as f:
        for r in data:
            f.write(f"bench\t{r['timestamp']}\t{r['time_ms']}\thost\t{r['metric']}\t{r['value']}\n")
        path = f.name
    t0 = time.perf_counter()
    with open(path) as fh:
        subprocess.run(["clickhouse-client", "--port", str(port), "--query",
                        "INSERT INTO bench_monitor.load_test_samples FORMAT TSV"], stdin=fh, check=True)
    client_rate = rows / (time.perf_counter() - t0)
    os.unlink(path)
    return sink_rate, client_rate


def main() -> int:
    with tempfile.TemporaryDirectory(prefix="bench-monitor-") as tmp:
        stack = Stack(Path(tmp), free_ports=True)
        try:
            ep = stack.start("clickhouse")["clickhouse"]
            client = chclient.connect(ep.url)
            schema.ensure(client, "bench_monitor")
            costs = sample_cost(ep.url, client)
            cpu = monitor_cpu(ep.url)
            sink_rate, client_rate = sink_vs_client(ep.url, ep.port)
        finally:
            stack.stop()
    print("ClickHouse sampler cost (median ms per sample; ClickHouse 18.16, 2 cores)")
    print(f"{'xAPI rows':>12}{'sampler':>10}{'reference count() FINAL':>26}")
    for size, ours, ref in costs:
        print(f"{size:>12,}{ours:>10.1f}{ref:>26.1f}")
    flat = costs[-1][1] / costs[0][1]
    print(f"sampler cost {SIZES[-1]:,} vs {SIZES[0]:,} rows: x{flat:.2f} (goal: flat, <= 50 ms)")
    print(f"monitor CPU at 1 s sampling: {cpu:.2f} % of a core (goal <= 1 %)")
    print(f"sink {sink_rate:,.0f} rows/s, clickhouse-client TSV {client_rate:,.0f} rows/s, "
          f"ratio {sink_rate / client_rate:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
