"""Open-model benchmark: achieved rate against the target, measured where the events arrive.

Tracking generator (locustfiles/tracking.py), 1 process, BENCH_ARRIVAL_USERS (200) users, no E2E
check, no monitor, at 100, 1,000 and 5,000 events/s (a plan of BENCH_ARRIVAL_SECONDS (10) s each,
--num-events = rate × seconds) and at the ceiling (a 20,000 events/s target for the same time,
which one process cannot reach), into redis_bus and kafka_bus. The receiving side gives the
achieved rate: (events − 1) / (last − first arrival), from the Redis stream ids (Redis's clock, ms)
or the Kafka message timestamps (CreateTime, ms). Drops come from the generator's own count.

Then the CPU per iteration of the pacing alone (bench/locustfiles/pacing.py: iterations doing
nothing), the arrival scheduler against the former per-user wait_time pacing, at 2,000/s: the
process's CPU time minus an idle run's, divided by the iterations. All on this machine's loopback.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

from stack import Stack

REPO = Path(__file__).resolve().parent.parent
LOCUST = str(Path(sys.executable).with_name("locust"))
SECONDS = int(os.environ.get("BENCH_ARRIVAL_SECONDS", "10"))
USERS = int(os.environ.get("BENCH_ARRIVAL_USERS", "200"))
RATES = (100, 1000, 5000)
CEILING_TARGET = 20_000
PACE_RATE, PACE_SECONDS = 2000, 10
_OPEN = re.compile(r"open model: planned ([\d,]+), started ([\d,]+), dropped ([\d,]+)")


def run_generator(backend: str, ep: dict, rate: float, ceiling: bool, tmp: Path) -> tuple[str, dict, str]:
    prefix = f"arr{uuid.uuid4().hex[:6]}"
    if backend == "kafka_bus":
        subprocess.run([sys.executable, "-m", "targets.streams.topics", "--brokers", ep["kafka"],
                        f"{prefix}-analytics"], cwd=REPO, check=True, capture_output=True)
    budget = ["--run-until-killed", "-t", f"{SECONDS + 2}s"] if ceiling else \
        ["--num-events", str(int(rate * SECONDS)), "-t", f"{SECONDS + 60}s"]
    args = [LOCUST, "-f", str(REPO / "locustfiles" / "tracking.py"), "--headless", "-u", str(USERS), "-r",
            str(USERS), "--pipeline-backend", backend, "--events-per-second", str(rate), "--no-e2e", "--no-monitor",
            "--no-sar", "--event-mix", "realistic", "--redis-stream-maxlen", "0", "--event-bus-redis-url",
            ep["redis"], "--kafka-bus-brokers", ep["kafka"], "--event-bus-prefix", prefix, "--only-summary",
            "--json-file", str(tmp / prefix), *budget]
    done = subprocess.run(args, cwd=REPO, capture_output=True, text=True, timeout=SECONDS + 180)
    m = _OPEN.search(done.stderr)
    if not m:
        raise RuntimeError(f"no open-model summary from the {backend} run: {done.stderr[-2000:]}")
    planned, started, dropped = (int(g.replace(",", "")) for g in m.groups())
    rows = json.loads((tmp / f"{prefix}.json").read_text())
    failed = sum(r["num_failures"] for r in rows if r["method"] == "EVENT")
    return f"{prefix}-analytics", {"planned": planned, "started": started, "dropped": dropped, "failed": failed}, \
        done.stderr


def arrivals_redis(url: str, stream: str) -> list[int]:
    import redis

    r = redis.Redis.from_url(url)
    out: list[int] = []
    last = "-"
    while True:  # pages of 10,000: a long stream in one XRANGE reply would be a large allocation
        page = r.xrange(stream, min=last, count=10_000)
        if last != "-":
            page = page[1:]
        if not page:
            break
        out += [int(i.decode().split("-")[0]) for i, _f in page]
        last = page[-1][0].decode()
    r.close()
    return sorted(out)


def arrivals_kafka(brokers: str, topic: str, expected: int) -> list[int]:
    from confluent_kafka import OFFSET_BEGINNING, Consumer, TopicPartition

    from monitors.kafka_latency import consumer_config

    c = Consumer(consumer_config({"bootstrap.servers": brokers}, f"bench-{uuid.uuid4().hex[:6]}"))
    # Partitions assigned, not subscribed: no group join to wait for (Tansu's takes session.timeout.ms/2).
    parts = sorted(c.list_topics(topic, timeout=10).topics[topic].partitions)
    c.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in parts])
    out: list[int] = []
    deadline = time.monotonic() + 120
    idle_since = time.monotonic()
    while len(out) < expected and time.monotonic() < deadline and time.monotonic() - idle_since < 20:
        batch = c.consume(num_messages=10_000, timeout=0.5)
        for msg in batch:
            if not msg.error():
                out.append(msg.timestamp()[1])
        if batch:
            idle_since = time.monotonic()
    c.close()
    return sorted(out)


def received_rate(ms: list[int]) -> float:
    return (len(ms) - 1) * 1000 / (ms[-1] - ms[0]) if len(ms) > 1 and ms[-1] > ms[0] else 0.0


def pacing_cpu(mode: str) -> tuple[float, int]:
    """CPU seconds of a pacing run and its iterations."""
    args = [LOCUST, "-f", str(REPO / "bench" / "locustfiles" / "pacing.py"), "--headless", "-u", "100", "-r", "100",
            "-t", f"{PACE_SECONDS}s", "--pacing", mode, "--pace-rate", str(PACE_RATE), "--no-monitor",
            "--only-summary"]
    proc = subprocess.Popen(args, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    err = proc.stderr.read()
    _, _, usage = os.wait4(proc.pid, 0)
    m = re.search(r"pacing iterations: (\d+)", err)
    return usage.ru_utime + usage.ru_stime, int(m.group(1)) if m else 0


def main() -> int:
    rows = []
    with tempfile.TemporaryDirectory(prefix="bench-arrival-") as tmp:
        stack = Stack(Path(tmp) / "stack", free_ports=True)
        try:
            eps = stack.start("redis", "kafka")
            ep = {"redis": eps["redis"].url, "kafka": eps["kafka"].url}
            for backend in filter(None, os.environ.get("BENCH_ARRIVAL_BACKENDS", "redis_bus,kafka_bus").split(",")):
                for rate, ceiling in [*((r, False) for r in RATES), (CEILING_TARGET, True)]:
                    stream, om, _log = run_generator(backend, ep, rate, ceiling, Path(tmp))
                    ms = arrivals_redis(ep["redis"], stream) if backend == "redis_bus" else \
                        arrivals_kafka(ep["kafka"], stream, om["started"])
                    rows.append((backend, rate, ceiling, om, len(ms), received_rate(ms)))
                    print(f"  {backend} {rate}/s{' (ceiling)' if ceiling else ''}: {om}, received {len(ms)}",
                          flush=True)
        finally:
            stack.stop()
        if os.environ.get("BENCH_ARRIVAL_NO_PACING"):
            idle_cpu = sched_cpu = old_cpu = 0.0
            sched_n = old_n = 1
        else:
            idle_cpu, _ = pacing_cpu("idle")
            sched_cpu, sched_n = pacing_cpu("scheduler")
            old_cpu, old_n = pacing_cpu("wait_time")
    print(f"\nOpen model, tracking generator, 1 process, {USERS} users, {SECONDS} s plans ({os.cpu_count()} cores, "
          "loopback; machine shared and noisy)")
    print(f"{'backend':<10}{'target/s':>11}{'planned':>10}{'started':>9}{'dropped':>9}{'failed':>8}{'received':>10}"
          f"{'recv rate/s':>13}{'achieved/target':>17}")
    for backend, rate, ceiling, om, n, recv in rows:
        label = f"{rate:,}" + (" ceil" if ceiling else "")
        print(f"{backend:<10}{label:>11}{om['planned']:>10,}{om['started']:>9,}{om['dropped']:>9,}{om['failed']:>8,}"
              f"{n:>10,}{recv:>13,.1f}{recv / rate:>17.4f}")
    if os.environ.get("BENCH_ARRIVAL_NO_PACING"):
        return 0
    per = {}
    for name, cpu, n in (("scheduler", sched_cpu, sched_n), ("wait_time (former)", old_cpu, old_n)):
        per[name] = (cpu - idle_cpu) * 1e6 / max(n, 1)
        print(f"pacing {name:<20} {n:>7,} iterations in {PACE_SECONDS} s at a {PACE_RATE:,}/s target: "
              f"{per[name]:.1f} µs CPU per iteration (idle run {idle_cpu:.2f} s CPU subtracted)")
    print(f"scheduler / former pacing CPU per iteration: {per['scheduler'] / per['wait_time (former)']:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
