"""Open-model benchmark: achieved rate against the target, measured where the events arrive.

Tracking generator (locustfiles/tracking.py), 1 process, BENCH_ARRIVAL_USERS (200) users, no E2E
check, no monitor, at 100, 1,000 and 5,000 events/s (a plan of BENCH_ARRIVAL_SECONDS (10) s each,
--num-events = rate × seconds) and at the ceiling (a 20,000 events/s target for the same time,
doubled while the generator receives 90 % of it or more, so the target is always beyond what it
can offer; at most 320,000/s), into redis_bus and kafka_bus. The receiving side gives the
achieved rate: (events − 1) / (last − first arrival), from the Redis stream ids (Redis's clock, ms)
or the Kafka message timestamps (CreateTime, ms). Drops come from the generator's own count.

Then 80 % of the ceiling reached, which must run without drops, and the generator's CPU per event:
(CPU of the ceiling run − CPU of the 100/s run) / (events of the one − events of the other), the
start-up and idle loop cancelling out.

BENCH_BASELINE=<commit> runs that commit's generator too (git archive into a temporary folder, the
same venv), each run right after the current code's at the same rate, and prints both: a
before/after pair from the same minutes of a shared machine.

Then the CPU per iteration of the pacing alone (bench/locustfiles/pacing.py: iterations doing
nothing) at 2,000/s, against the former per-user wait_time pacing: the open model per user
(`attach`, what HTTP, MQTT and Kafka users use) and as the tracking generator takes it (`due`: the
instants due at one wake-up in one go); the process's CPU time minus an idle run's, divided by the
iterations. All on this machine's loopback. With BENCH_BASELINE the baseline's open model paces
too, right after the current one's; BENCH_ARRIVAL_PACING_ROUNDS=N repeats the pacing runs N times;
BENCH_ARRIVAL_PACING_ONLY=1 runs only them (no stack); BENCH_ARRIVAL_RATES (100,1000,5000: the first is the
CPU per event's base), BENCH_ARRIVAL_COST_BACKENDS (redis_bus,kafka_bus,celery,vector; empty: none) trim a run; BENCH_ARRIVAL_PACING_MODES=scheduler,wait_time only
those pacings (of scheduler, due, wait_time, wait_time_even).
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
RATES = tuple(int(r) for r in os.environ.get("BENCH_ARRIVAL_RATES", "100,1000,5000").split(","))  # the first: CPU's base
CEILING_TARGET = 20_000  # the first ceiling target; doubled while 90 % of it is received
CEILING_MAX = 320_000
PACE_RATE, PACE_SECONDS = 2000, 10
_OPEN = re.compile(r"open model: planned ([\d,]+), started ([\d,]+), dropped ([\d,]+)")


def baseline_checkout(commit: str, tmp: Path) -> Path:
    """The tree of `commit` in a temporary folder (the bench's before)."""
    out = tmp / "baseline"
    out.mkdir()
    archive = subprocess.run(["git", "-C", str(REPO), "archive", commit], check=True, capture_output=True).stdout
    subprocess.run(["tar", "-x", "-C", str(out)], input=archive, check=True)
    return out


def run_generator(backend: str, ep: dict, rate: float, ceiling: bool, tmp: Path,
                  code: Path = REPO) -> tuple[str, dict, str]:
    prefix = f"arr{uuid.uuid4().hex[:6]}"
    if backend == "kafka_bus":
        subprocess.run([sys.executable, "-m", "targets.streams.topics", "--brokers", ep["kafka"],
                        f"{prefix}-analytics"], cwd=REPO, check=True, capture_output=True)
    budget = ["--run-until-killed", "-t", f"{SECONDS + 2}s"] if ceiling else \
        ["--num-events", str(int(rate * SECONDS)), "-t", f"{SECONDS + 60}s"]
    args = [LOCUST, "-f", str(code / "locustfiles" / "tracking.py"), "--headless", "-u", str(USERS), "-r",
            str(USERS), "--pipeline-backend", backend, "--events-per-second", str(rate), "--no-e2e", "--no-monitor",
            "--no-sar", "--event-mix", "realistic", "--redis-stream-maxlen", "0", "--event-bus-redis-url",
            ep["redis"], "--kafka-bus-brokers", ep["kafka"], "--event-bus-prefix", prefix, "--only-summary",
            "--json-file", str(tmp / prefix), *budget]
    # The code's own modules first (a baseline checkout is not the one on the venv's path).
    env = {**os.environ, "PYTHONPATH": str(code)}
    proc = subprocess.Popen(args, cwd=code, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    err = proc.stderr.read()  # the run ends by itself (a budget, or -t)
    _, _, usage = os.wait4(proc.pid, 0)  # its CPU time, which Popen.wait would not give
    proc.returncode = 0
    m = _OPEN.search(err)
    if not m:
        raise RuntimeError(f"no open-model summary from the {backend} run: {err[-2000:]}")
    planned, started, dropped = (int(g.replace(",", "")) for g in m.groups())
    rows = json.loads((tmp / f"{prefix}.json").read_text())
    failed = sum(r["num_failures"] for r in rows if r["method"] == "EVENT")
    cpu = usage.ru_utime + usage.ru_stime
    return f"{prefix}-analytics", {"planned": planned, "started": started, "dropped": dropped, "failed": failed,
                                   "cpu_s": cpu}, err


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


def pacing_cpu(mode: str, code: Path = REPO) -> tuple[float, int]:
    """CPU seconds of a pacing run between its plan's start and its stop, and its iterations meanwhile
    (`code`: the checkout whose scheduler paces, the current one's pacing locustfile)."""
    args = [LOCUST, "-f", str(REPO / "bench" / "locustfiles" / "pacing.py"), "--headless", "-u", "100", "-r", "100",
            "-t", f"{PACE_SECONDS}s", "--pacing", mode, "--pace-rate", str(PACE_RATE), "--no-monitor",
            "--only-summary"]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(dict.fromkeys([str(code), str(REPO)]))}
    done = subprocess.run(args, cwd=REPO, env=env, capture_output=True, text=True, timeout=PACE_SECONDS + 120)
    m = re.search(r"in the window: (\d+) iterations, ([\d.]+) s CPU", done.stderr)
    if not m:
        raise RuntimeError(f"no pacing figures from the {mode} run: {done.stderr[-2000:]}")
    return float(m.group(2)), int(m.group(1))


PACE_MODES = (("scheduler", "open model per user"), ("due", "open model, due at once"),
              ("wait_time", "wait_time (former)"), ("wait_time_even", "wait_time, phases spread"))


def pacing_report(codes: list[tuple[str, Path]]) -> None:
    """BENCH_ARRIVAL_PACING_ROUNDS (1) rounds of the pacing runs, the open model's of each code right
    after the other (before/after pairs from the same minutes), each round's ratios from its own runs."""
    for rnd in range(int(os.environ.get("BENCH_ARRIVAL_PACING_ROUNDS", "1"))):
        idle_cpu = pacing_cpu("idle")[0]
        per = {}
        print(f"\nPacing, round {rnd + 1} ({PACE_RATE:,}/s, 100 users, {PACE_SECONDS} s; the idle run's "
              f"{idle_cpu:.3f} s CPU subtracted; load average {os.getloadavg()[0]:.1f}):", flush=True)
        chosen = os.environ.get("BENCH_ARRIVAL_PACING_MODES", "")
        for mode, name in PACE_MODES:
            if chosen and mode not in chosen.split(","):
                continue
            for label, code in codes if mode in ("scheduler", "due") else codes[:1]:
                cpu, n = pacing_cpu(mode, code)
                key = f"{name} ({label})" if mode in ("scheduler", "due") else name
                if n <= 0 or cpu <= idle_cpu:
                    print(f"  pacing {key:<40} not measured: {n:,} iterations, {cpu:.3f} s CPU", flush=True)
                    continue
                per[(mode, label)] = (cpu - idle_cpu) * 1e6 / n
                print(f"  pacing {key:<40} {n:>7,} iterations: {per[(mode, label)]:.1f} µs CPU per iteration",
                      flush=True)
        for mode in ("scheduler", "due"):
            for label, _code in codes:
                for base, goal in ((("wait_time", "now"), " (goal <= 1.5)"), (("wait_time_even", "now"), "")):
                    if (mode, label) in per and base in per:
                        print(f"  {mode} ({label}) / {base[0]} CPU per iteration: "
                              f"{per[(mode, label)] / per[base]:.2f}{goal}")


def main() -> int:
    rows = []
    baseline = os.environ.get("BENCH_BASELINE", "")
    with tempfile.TemporaryDirectory(prefix="bench-arrival-") as tmp:
        codes = [("now", REPO)]
        if baseline:
            codes.append((baseline[:10], baseline_checkout(baseline, Path(tmp))))
        if os.environ.get("BENCH_ARRIVAL_PACING_ONLY"):
            pacing_report(codes)
            return 0
        stack = Stack(Path(tmp) / "stack", free_ports=True)
        try:
            eps = stack.start("redis", "kafka")
            ep = {"redis": eps["redis"].url, "kafka": eps["kafka"].url}

            def measure(backend: str, rate: float, ceiling: bool, label: str, code: Path) -> dict:
                stream, om, _log = run_generator(backend, ep, rate, ceiling, Path(tmp), code)
                ms = arrivals_redis(ep["redis"], stream) if backend == "redis_bus" else \
                    arrivals_kafka(ep["kafka"], stream, om["started"])
                row = {"backend": backend, "code": label, "rate": rate, "ceiling": ceiling, **om,
                       "received": len(ms), "recv_rate": received_rate(ms)}
                rows.append(row)
                print(f"  {label} {backend} {rate:,.0f}/s{' (ceiling)' if ceiling else ''}: {om}, received {len(ms)}",
                      flush=True)
                return row

            def ceiling(backend: str, label: str, code: Path) -> dict:
                target = CEILING_TARGET
                while True:  # a target the generator cannot reach, or its ceiling is the target's
                    row = measure(backend, target, True, label, code)
                    if row["recv_rate"] < 0.9 * target or target >= CEILING_MAX:
                        return row
                    rows.remove(row)  # reached: not a ceiling
                    target *= 2

            for backend in filter(None, os.environ.get("BENCH_ARRIVAL_BACKENDS", "redis_bus,kafka_bus").split(",")):
                for rate in RATES:
                    for label, code in codes:  # alternating: the before and the after see the same machine
                        measure(backend, rate, False, label, code)
                for label, code in codes:
                    ceiling(backend, label, code)
                ceil = next(r for r in rows if r["backend"] == backend and r["ceiling"] and r["code"] == "now")
                if ceil["recv_rate"] > 0:  # goal: no drops at 80 % of the ceiling just measured
                    measure(backend, round(0.8 * ceil["recv_rate"]), False, "now", REPO)["at80"] = True
            costs = {}
            for backend in filter(None, os.environ.get("BENCH_ARRIVAL_COST_BACKENDS",
                                                       "redis_bus,kafka_bus,celery,vector").split(",")):
                done = subprocess.run([sys.executable, "-m", "bench._generator_cost", backend, ep["redis"], ep["kafka"],
                                       tmp], cwd=REPO, capture_output=True, text=True, timeout=600)
                costs[backend] = json.loads(done.stdout.strip().splitlines()[-1]) if done.returncode == 0 else \
                    {"error": done.stderr.strip().splitlines()[-1:]}
        finally:
            stack.stop()
        if not os.environ.get("BENCH_ARRIVAL_NO_PACING"):
            pacing_report(codes)  # here: a baseline checkout lives in tmp
    print(f"\nOpen model, tracking generator, 1 process, {USERS} users, {SECONDS} s plans ({os.cpu_count()} cores, "
          "loopback; machine shared and noisy)")
    print(f"{'backend':<10}{'code':>11}{'target/s':>13}{'planned':>10}{'started':>9}{'dropped':>9}{'failed':>8}"
          f"{'received':>10}{'recv rate/s':>13}{'achieved/target':>17}")
    for r in rows:
        label = f"{r['rate']:,.0f}" + (" ceil" if r["ceiling"] else "")
        print(f"{r['backend']:<10}{r['code']:>11}{label:>13}{r['planned']:>10,}{r['started']:>9,}{r['dropped']:>9,}"
              f"{r['failed']:>8,}{r['received']:>10,}{r['recv_rate']:>13,.1f}{r['recv_rate'] / r['rate']:>17.4f}")
    print()
    for backend in dict.fromkeys(r["backend"] for r in rows):
        for label, _code in codes:
            mine = [r for r in rows if r["backend"] == backend and r["code"] == label]
            low = next(r for r in mine if r["rate"] == RATES[0])
            top = next(r for r in mine if r["ceiling"])
            if top["recv_rate"] <= 0 or top["started"] <= low["started"]:
                print(f"{backend} ({label}): ceiling not measured: {top['received']:,} events received, "
                      f"{top['started']:,} started")
                continue
            us = (top["cpu_s"] - low["cpu_s"]) * 1e6 / (top["started"] - low["started"])
            print(f"{backend} ({label}): ceiling {top['recv_rate']:,.0f} events/s received (target "
                  f"{top['rate']:,.0f}/s), {us:,.1f} µs CPU per event")
        if baseline:
            now, old = (next(r for r in rows if r["backend"] == backend and r["code"] == c and r["ceiling"])
                        for c in (codes[0][0], codes[1][0]))
            if now["recv_rate"] > 0 and old["recv_rate"] > 0:
                print(f"{backend}: ceiling now / {codes[1][0]} = {now['recv_rate'] / old['recv_rate']:.2f} (goal >= 4)")
            else:
                print(f"{backend}: ceiling ratio not measured (a ceiling run received no events)")
        at80 = next((r for r in rows if r["backend"] == backend and r.get("at80")), None)
        if at80 is None:
            print(f"{backend}: 80 % of the ceiling not measured (no ceiling)")
        else:
            print(f"{backend}: at 80 % of the ceiling ({at80['rate']:,.0f}/s): {at80['dropped']:,} dropped of "
                  f"{at80['planned']:,} (goal 0: {'met' if at80['dropped'] == 0 else 'NOT met'}), "
                  f"{at80['recv_rate']:,.1f}/s received")
    print("\nWhere a send's CPU goes, µs per event in one process without the scheduler (bench/_generator_cost.py):")
    print(f"{'backend':<10}{'build':>8}{'ERB':>8}{'encode':>8}{'stats':>8}{'transport':>11}{'send':>8}{'build+send':>12}")
    for backend, c in costs.items():
        if "error" in c:
            print(f"{backend:<10} not measured: {c['error']}")
            continue
        print(f"{backend:<10}{c['build']:>8,.1f}{c.get('erb', 0):>8,.1f}{c['encode']:>8,.1f}{c['stats']:>8,.1f}"
              f"{c['transport']:>11,.1f}{c['total']:>8,.1f}{c['build'] + c['total']:>12,.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
