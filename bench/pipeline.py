"""Tracking pipeline benchmark: generator events/s per backend, and the reference pipeline's capacity.

Generator: locustfiles/tracking.py, 1 process, 20 users without waits, no consumer, no E2E check,
BENCH_SECONDS (15) per backend, against a native client doing the same writes in the same run
(redis-benchmark for LPUSH/XADD with 20 connections, a plain confluent-kafka loop, a plain write()
loop). Goal: >= 5,000 events/s for redis_bus and kafka_bus.
Pipeline: BENCH_PIPELINE_EVENTS (20,000) events are put into the entry point first, then the
reference pipeline starts and the time until all are in ClickHouse gives its events/s, for 1 and 2
workers and batches of 100 and 1000 — the throughput a sustained load must stay under for the lag
to stay bounded. It transforms with the real event-routing-backends (openedx_erb), whose cost per
event is measured alone too (one process, the same events). Goal: >= 1,000 events/s per worker.
A capacity is printed only when all the events were stored: a pipeline that exits, or stores none
more for STALL_S seconds, is "not measured" with the reason. BENCH_BASELINE=<commit> runs that
commit's generator too (a "baseline ev/s" column). BENCH_BACKENDS (comma-separated) limits the backends. All on this machine's loopback (2 cores
shared by everything).
"""

from __future__ import annotations

import csv
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import backends
from plumbing import chclient
from stack import Stack

REPO = Path(__file__).resolve().parent.parent
LOCUST = str(Path(sys.executable).with_name("locust"))
SECONDS = int(os.environ.get("BENCH_SECONDS", "15"))
EVENTS = int(os.environ.get("BENCH_PIPELINE_EVENTS", "20000"))
REFERENCED = backends.having("REFERENCE_CONSUMER")  # the backends with a reference pipeline of ours
BACKENDS = tuple(b for b in os.environ.get("BENCH_BACKENDS", ",".join(REFERENCED)).split(",") if b)
USERS = 100  # learners in the queued events; ERB caches 128 actors, so every actor lookup after the first hits


def generator_rate(backend: str, ep: dict, tmp: Path, code: Path = REPO) -> float:
    prefix = tmp / f"gen-{backend}-{code.name}"
    args = [LOCUST, "-f", str(code / "locustfiles" / "tracking.py"), "--headless", "-u", "20", "-r", "20",
            "-t", f"{SECONDS}s", "--pipeline-backend", backend, "--run-until-killed", "--sleep-time", "0",
            "--no-e2e", "--no-monitor", "--no-sar", "--event-mix", "realistic", "--csv", str(prefix),
            "--csv-full-history", "--loglevel", "WARNING", "--celery-broker-url", ep["redis"],
            "--event-bus-redis-url", ep["redis"], "--kafka-bus-brokers", ep["kafka"],
            "--vector-log-file", str(tmp / "gen.log"), "--event-bus-prefix", f"gen{uuid.uuid4().hex[:6]}"]
    # The code's own modules first (a baseline checkout is not the one on the venv's path).
    subprocess.run(args, cwd=code, env={**os.environ, "PYTHONPATH": str(code)}, capture_output=True,
                   timeout=SECONDS + 120)
    with open(f"{prefix}_stats_history.csv", newline="") as f:
        rows = [r for r in csv.DictReader(f) if r["Name"] == "Aggregated" and r["User Count"] == "20"]
    a, b = rows[2], rows[-1]
    return (int(b["Total Request Count"]) - int(a["Total Request Count"])) / max(float(b["Timestamp"]) -
                                                                                  float(a["Timestamp"]), 1)


def native_rate(backend: str, ep: dict, tmp: Path) -> tuple[str, float]:
    from openedx_erb import wire
    from openedx_erb.events import EventFactory, TrackedLearner

    e = EventFactory("course-v1:OEX+bench+2024-1", "realistic").next_event(TrackedLearner(1, "lt__000001"))
    n = 200_000
    if backend in ("celery", "redis_bus"):
        port = ep["redis"].rsplit(":", 1)[1].split("/")[0]
        if backend == "celery":
            cmd = ["LPUSH", "bench-native", wire.celery_message(["event_transformer", e], "q").decode()]
        else:
            cmd = ["XADD", "bench-native-s", "MAXLEN", "~", "10000", "*", "event_data", wire.tracking_log_avro(e).hex()]
        out = subprocess.run(["redis-benchmark", "-p", port, "-c", "20", "-n", str(n), "-q", *cmd],
                             capture_output=True, text=True, timeout=300).stdout
        # -q prints "<command>: <n> requests per second" (the command holds the whole message).
        rate = float(re.findall(r"([\d.]+) requests per second", out)[-1])
        return "redis-benchmark -c 20", rate
    if backend == "kafka_bus":
        from confluent_kafka import Producer

        value = wire.confluent_wire(1, wire.tracking_log_avro(e))
        p = Producer({"bootstrap.servers": ep["kafka"], "linger.ms": 5, "acks": "all"})
        t0 = time.perf_counter()
        for _ in range(n):
            while True:
                try:
                    p.produce("bench-native", value, headers=wire.kafka_headers())
                    break
                except BufferError:
                    p.poll(0.01)
            p.poll(0)
        p.flush(60)
        return "plain confluent-kafka loop", n / (time.perf_counter() - t0)
    import openedx_erb

    line = "".join(wire.xapi_line(s) for s in openedx_erb.statements(e)).encode()
    fd = os.open(tmp / "native.log", os.O_WRONLY | os.O_APPEND | os.O_CREAT)
    t0 = time.perf_counter()
    for _ in range(n):
        os.write(fd, line)
    os.close(fd)
    return "plain write() loop", n / (time.perf_counter() - t0)


def bench_events(n: int) -> list[dict]:
    from openedx_erb.events import EventFactory, TrackedLearner

    f = EventFactory("course-v1:OEX+bench+2024-1", "realistic")
    learners = [TrackedLearner(i, f"lt__{i:06d}") for i in range(USERS)]
    return [f.next_event(learners[i % USERS]) for i in range(n)]


def erb_cost(n: int = 5000) -> tuple[float, dict[str, float]]:
    """CPU microseconds per event in event-routing-backends alone (this process, warm caches): mean, per name.

    CPU time, not wall time: on a shared machine the wall clock also counts other jobs' turns.
    """
    import openedx_erb

    events = bench_events(n)
    for e in events[:500]:
        openedx_erb.statement_texts(e)
    per: dict[str, list[float]] = {}
    t0 = time.process_time()
    for e in events:
        t = time.process_time()
        openedx_erb.statement_texts(e)
        per.setdefault(e["name"], []).append(time.process_time() - t)
    mean = (time.process_time() - t0) / n * 1e6
    return mean, {name: sum(v) / len(v) * 1e6 for name, v in per.items()}


def fill(backend: str, ep: dict, prefix: str, log_file: Path) -> None:
    """Put EVENTS events into the entry point, as the generator would, before the pipeline runs."""
    import redis

    import openedx_erb
    from openedx_erb import wire

    events = bench_events(EVENTS)
    if backend in ("celery", "redis_bus"):
        r = redis.Redis.from_url(ep["redis"])
        pipe = r.pipeline(transaction=False)
        for i, e in enumerate(events):
            if backend == "celery":
                pipe.lpush(f"{prefix}.lms", wire.celery_message(["event_transformer", e], f"{prefix}.lms"))
            else:
                pipe.xadd(f"{prefix}-analytics", wire.redis_bus_fields(e))
            if i % 1000 == 999:
                pipe.execute()
        pipe.execute()
        if backend == "redis_bus":  # the group must exist from the stream's start, as if it had been running
            r.xgroup_create(f"{prefix}-analytics", group_of(prefix), id="0")
    elif backend == "kafka_bus":
        from confluent_kafka import Producer

        p = Producer({"bootstrap.servers": ep["kafka"], "linger.ms": 20})
        for e in events:
            while True:
                try:
                    p.produce(f"{prefix}-analytics", wire.confluent_wire(1, wire.tracking_log_avro(e)),
                              key=wire.confluent_wire(2, wire.avro_string(e["context"]["username"])),
                              headers=wire.kafka_headers())
                    break
                except BufferError:
                    p.poll(0.01)
        p.flush(60)
    else:
        with open(log_file, "w") as out:
            for e in events:
                out.write("".join(wire.xapi_line(s) for s in openedx_erb.statements(e)))


def tree_cpu_seconds(pid: int) -> float:
    """User + system CPU of a process and its children so far (the pipeline and its workers)."""
    import psutil

    total = 0.0
    root = psutil.Process(pid)
    for p in [root, *root.children(recursive=True)]:
        try:
            t = p.cpu_times()
            total += t.user + t.system
        except psutil.NoSuchProcess:
            pass
    return total


def group_of(prefix: str) -> str:
    """Each measurement's consumer group of its own (see bench.capacity_table: slow rejoins)."""
    return f"erb-{prefix}"


def start_pipeline(backend: str, workers: int, batch: int, ep: dict, prefix: str, log_file: Path, ready: Path,
                   stderr=subprocess.DEVNULL) -> subprocess.Popen:
    """The reference pipeline of `backend` on its own names (`prefix`: queues, stream, topic, database)."""
    return subprocess.Popen([sys.executable, "-m", "targets.pipeline", backend, "--workers", str(workers),
                             "--batch-size", str(batch), "--batch-interval", "1", "--clickhouse-url", ep["clickhouse"],
                             "--xapi-database", f"xapi_{prefix}", "--redis-url", ep["redis"], "--topic-prefix", prefix,
                             "--queues", f"{prefix}.lms", "--backend-name", prefix, "--kafka-brokers", ep["kafka"],
                             "--session-timeout-ms", "6000", "--log-file", str(log_file), "--ready-file", str(ready),
                             "--group", group_of(prefix)],
                            cwd=REPO, stdout=subprocess.DEVNULL, stderr=stderr, start_new_session=True)


STALL_S = 120  # no new row in ClickHouse for this long: the pipeline is stuck, its capacity not measured


def pipeline_rate(backend: str, workers: int, batch: int, ep: dict, tmp: Path) -> tuple[float | None, float, str]:
    """(events/s into ClickHouse, the pipeline's CPU microseconds per event, start-up included, "") once all
    EVENTS are stored; (None, 0, why) when they never all were: a figure is printed only if measured."""
    prefix = f"b{uuid.uuid4().hex[:6]}"
    db = f"xapi_{prefix}"
    log_file = tmp / f"{prefix}.log"
    if backend == "kafka_bus":
        subprocess.run([sys.executable, "-m", "targets.streams.topics", "--brokers", ep["kafka"], f"{prefix}-analytics"],
                       cwd=REPO, check=True, capture_output=True)
    fill(backend, ep, prefix, log_file)
    ready, err_file = tmp / f"{prefix}.ready", tmp / f"{prefix}.err"
    t0 = time.perf_counter()
    with open(err_file, "wb") as err_out:
        proc = start_pipeline(backend, workers, batch, ep, prefix, log_file, ready, err_out)
    client = chclient.connect(ep["clickhouse"])
    n, last_n, progress_at = 0, -1, time.monotonic()
    try:
        while True:
            try:
                n = client.execute(f"SELECT count() FROM {db}.xapi_events_all")[0][0]
            except Exception:  # noqa: BLE001 - the table is created by the pipeline on start
                n = 0
            if n >= EVENTS:
                # CPU per event holds still on a busy machine, where events/s depends on what else runs.
                return n / (time.perf_counter() - t0), tree_cpu_seconds(proc.pid) / n * 1e6, ""
            if n != last_n:
                last_n, progress_at = n, time.monotonic()
            if proc.poll() is not None:
                err = err_file.read_text(errors="replace").strip().splitlines()
                return None, 0.0, (f"the pipeline exited (code {proc.returncode}) with {n:,} of {EVENTS:,} stored"
                                   + (f": {err[-1][:160]}" if err else ""))
            if time.monotonic() - progress_at > STALL_S:
                return None, 0.0, f"{n:,} of {EVENTS:,} stored, none more for {STALL_S} s"
            time.sleep(0.2)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, 15)
        proc.wait(timeout=60)
        client.disconnect()


def main() -> int:
    if not shutil.which("redis-benchmark"):
        print("error: redis-benchmark is not installed (Debian redis-tools; make setup installs it)", file=sys.stderr)
        return 2
    unknown = [b for b in BACKENDS if b not in REFERENCED]
    if unknown or not BACKENDS:
        print(f"error: BENCH_BACKENDS {','.join(BACKENDS)!r}: expected some of {','.join(REFERENCED)}",
              file=sys.stderr)
        return 2
    gen: dict = {}
    cap: dict = {}
    erb_us, erb_names = erb_cost()
    with tempfile.TemporaryDirectory(prefix="bench-pipeline-") as tmp:
        home = Path(tmp)
        stack = Stack(home / "stack", free_ports=True)
        try:
            eps = stack.start("clickhouse", "redis", "kafka")
            ep = {"clickhouse": eps["clickhouse"].url, "redis": eps["redis"].url, "kafka": eps["kafka"].url}
            baseline = os.environ.get("BENCH_BASELINE", "")
            old = None
            if baseline:  # that commit's generator too, run right after the current one (bench/arrival.py's way)
                from bench.arrival import baseline_checkout

                old = baseline_checkout(baseline, home)
            for backend in BACKENDS:
                gen[backend] = (generator_rate(backend, ep, home), *native_rate(backend, ep, home),
                                generator_rate(backend, ep, home, old) if old else None)
            for backend in BACKENDS:
                for workers in ((1,) if backend == "vector" else (1, 2)):
                    for batch in (100, 1000):
                        cap[(backend, workers, batch)] = pipeline_rate(backend, workers, batch, ep, home)
        finally:
            stack.stop()
    print(f"Tracking generator, 1 process, 20 users, no waits, {SECONDS} s ({os.cpu_count()} cores, loopback)")
    print(f"{'backend':<12}{'suite ev/s':>12}{'native ev/s':>13}{'ratio':>8}{'baseline ev/s':>15}  native tool")
    for b, (suite, tool, native, before) in gen.items():
        goal = "  (goal >= 5,000: " + ("met)" if suite >= 5000 else "NOT met)") if b in ("redis_bus", "kafka_bus") else ""
        was = f"{before:>15,.0f}" if before is not None else f"{'-':>15}"
        print(f"{b:<12}{suite:>12,.0f}{native:>13,.0f}{suite / native:>8.2f}{was}  {tool}{goal}")
    print(f"\nevent-routing-backends alone: {erb_us:,.0f} CPU us/event = {1e6 / erb_us:,.0f} events/s per core "
          f"(realistic mix, {USERS} learners; " + ", ".join(f"{n} {us:,.0f}" for n, us in sorted(erb_names.items())) + ")")
    print(f"\nReference pipeline capacity: {EVENTS:,} queued events to ClickHouse 18.16, events/s (per worker); "
          "its CPU per event (all its processes, start-up included)")
    print(f"{'backend':<12}{'workers':>8}{'batch 100':>20}{'batch 1000':>20}{'CPU us/event':>16}"
          "  goal >= 1,000/s per worker")
    not_measured = []
    for backend in BACKENDS:
        for workers in ((1,) if backend == "vector" else (1, 2)):
            results = [cap[(backend, workers, b)] for b in (100, 1000)]
            cells = "".join(f"{'not measured':>20}" if r is None else f"{r:>11,.0f} ({r / workers:>5,.0f})"
                            for r, _cpu, _why in results)
            cpu = "/".join("-" if r is None else f"{c:,.0f}" for r, c, _why in results)
            measured = [r for r, _c, _w in results if r is not None]
            verdict = "not measured" if not measured else "met" if min(measured) / workers >= 1000 else "NOT met"
            print(f"{backend:<12}{workers:>8}{cells}{cpu:>16}  {verdict}")
            not_measured += [f"{backend}, {workers} worker(s), batch {b}: {why}"
                             for b, (r, _c, why) in zip((100, 1000), results, strict=True) if r is None]
    for line in not_measured:
        print(f"not measured: {line}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
