"""Kafka benchmark: producer and latency-consumer msgs/s per process against native clients.

Producer: locustfiles/kafka.py (10 users, no wait, 1M messages) vs a plain confluent-kafka
produce loop vs `kcat -P` (goal ≥ 0.8× kcat). Consumer: monitors.kafka_latency reading 1M
output messages vs a plain confluent-kafka consume loop vs `kcat -C` (goal ≥ 0.7×).
Debian bookworm's kcat links librdkafka 2.0.2, which cannot parse Tansu's ApiVersions answer; when
the installed kcat cannot reach the broker, it is run on the librdkafka bundled in the
confluent-kafka wheel (the very library the suite uses) through LD_LIBRARY_PATH. Without any
working kcat the plain confluent-kafka loops are the baseline, and the table says so.

First, BENCH_KAFKA_ROUNDS (3) interleaved producer rounds — plain loop, suite, suite, plain, … each in
a process of its own — with each round's ratio, the median and its spread, and each side's CPU per
message (net of a small run's start-up): one pair a minute apart swung 0.57–1.20 on this shared
machine. BENCH_KAFKA_ROUNDS_ONLY=1 stops after them.
"""

from __future__ import annotations

import json
import os
import re
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from plumbing.locust_csv import read_locust_stats
from stack import Stack

REPO = Path(__file__).resolve().parent.parent
LOCUST = str(Path(sys.executable).with_name("locust"))
N = int(os.environ.get("BENCH_KAFKA_MESSAGES", "1000000"))
ROUNDS = int(os.environ.get("BENCH_KAFKA_ROUNDS", "3"))  # interleaved producer rounds (0: none)


def lines(n: int = N) -> list[tuple[bytes, bytes]]:
    """(key, value) of what a native producer sends: the data file's records keyed by `identifier`, as
    the suite keys them (kcat -P -K reads them as `key<TAB>json` lines)."""
    records = json.loads((REPO / "conf" / "kafka-data.json").read_text())
    encoded = [(str(r["identifier"]).encode(), json.dumps(r, separators=(",", ":")).encode()) for r in records]
    return [encoded[i % len(encoded)] for i in range(n)]


def plain_produce(brokers: str, topic: str, n: int = N) -> float:
    """A bare confluent-kafka loop over pre-encoded lines, counting delivery reports, as kcat -P does."""
    from confluent_kafka import Producer

    values = lines(n)
    delivered = [0]

    def on_delivery(err, msg) -> None:
        delivered[0] += 1

    p = Producer({"bootstrap.servers": brokers, "linger.ms": 5, "acks": "all", "on_delivery": on_delivery})
    t0 = time.perf_counter()
    for k, v in values:
        while True:
            try:
                p.produce(topic, v, k)
                break
            except BufferError:
                p.poll(0.01)
        p.poll(0)
    p.flush(60)
    assert delivered[0] == n, delivered
    return n / (time.perf_counter() - t0)


def child_cpu(args: list[str], **kw) -> tuple[subprocess.CompletedProcess, float]:
    """Run a child process to its end; its CPU seconds (every thread: librdkafka's too)."""
    r0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    done = subprocess.run(args, **kw)
    r1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    return done, (r1.ru_utime + r1.ru_stime) - (r0.ru_utime + r0.ru_stime)


def plain_produce_child(brokers: str, topic: str, n: int = N) -> tuple[float, float]:
    """plain_produce in a process of its own, as the suite's Locust runs: (messages/s, CPU seconds of
    the whole process)."""
    done, cpu = child_cpu([sys.executable, "-m", "bench.kafka", "--plain", brokers, topic, str(n)], cwd=REPO,
                          capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr[-2000:]
    return float(done.stdout.strip().splitlines()[-1]), cpu


def suite_produce(brokers: str, topic: str, out: Path, n: int = N) -> tuple[float, float, float]:
    """(messages/s from Locust's own figures — first request to last delivery —, messages/s over the
    whole process including Locust's start-up and end, CPU seconds of the whole process)."""
    prefix = out / f"produce-{topic}"
    t0 = time.perf_counter()
    done, cpu = child_cpu([LOCUST, "-f", str(REPO / "locustfiles" / "kafka.py"), "--headless", "-u", "10", "-r", "100",
                           "-t", "10m", "--kafka-brokers", brokers, "--kafka-topic", topic, "--kafka-messages", str(n),
                           "--csv", str(prefix), "--no-monitor", "--no-sar", "--loglevel", "WARNING"], cwd=REPO,
                          capture_output=True, text=True, timeout=900)
    wall = time.perf_counter() - t0
    stats = read_locust_stats(prefix)[topic]
    assert done.returncode == 0 and int(stats["Request Count"]) == n, (stats, done.stderr[-2000:])
    return float(stats["Requests/s"]), n / wall, cpu


def producer_rounds(brokers: str, tmp: Path, rounds: int) -> None:
    """`rounds` interleaved rounds of the plain loop and the suite's producer (the order swapped each
    round, so a drift of the machine's load favours neither), each round's ratio, then the median
    ratio and its spread. Beside the rates, each side's CPU per message: (CPU of the N-message run −
    CPU of a SMALL-message run of the same program) / (N − SMALL), start-up and exit cancelling out —
    steadier than a rate when other jobs share the machine."""
    small = max(N // 100, 1)
    if N <= small:
        print(f"Producer rounds not measured: BENCH_KAFKA_MESSAGES={N} leaves no messages beyond the start-up run")
        return
    topics = [f"b-r{r}-{k}" for r in range(rounds) for k in ("plain", "suite", "plain-s", "suite-s")]
    subprocess.run([sys.executable, "-m", "targets.streams.topics", "--brokers", brokers, *topics], cwd=REPO,
                   check=True, capture_output=True)
    rates, cpus = [], []
    print(f"Producer, {rounds} interleaved rounds of {N:,} messages (CPU per message net of a {small:,}-message "
          "run of the same program):", flush=True)
    for r in range(rounds):
        got = {}
        for kind in (("plain", "suite") if r % 2 == 0 else ("suite", "plain")):
            load = os.getloadavg()[0]
            if kind == "plain":
                rate, cpu = plain_produce_child(brokers, f"b-r{r}-plain")
                cpu_small = plain_produce_child(brokers, f"b-r{r}-plain-s", small)[1]
            else:
                rate, _wall, cpu = suite_produce(brokers, f"b-r{r}-suite", tmp)
                cpu_small = suite_produce(brokers, f"b-r{r}-suite-s", tmp, small)[2]
            # A start-up's CPU that varied by more than the work's leaves nothing measured.
            got[kind] = (rate, (cpu - cpu_small) * 1e6 / (N - small) if cpu > cpu_small else None, load)
        (pr, pc, pl), (sr, sc, sl) = got["plain"], got["suite"]
        rates.append(sr / pr)
        if pc is not None and sc is not None:
            cpus.append(pc / sc)

        def us(c: float | None) -> str:
            return "CPU/msg not measured" if c is None else f"{c:.2f} µs CPU/msg"

        print(f"  round {r + 1}: plain {pr:,.0f} msgs/s, {us(pc)} (load {pl:.1f}); suite {sr:,.0f} msgs/s, {us(sc)} "
              f"(load {sl:.1f}); suite/plain rate {sr / pr:.2f}" + (f", CPU plain/suite {pc / sc:.2f}" if pc and sc else ""),
              flush=True)
    cpu_line = (f"CPU per message plain/suite median {statistics.median(cpus):.2f} (spread {min(cpus):.2f}–"
                f"{max(cpus):.2f}, {len(cpus)} rounds)" if cpus else "CPU per message not measured")
    print(f"producer suite/plain over {rounds} rounds: rate ratio median {statistics.median(rates):.2f} "
          f"(spread {min(rates):.2f}–{max(rates):.2f}); {cpu_line} (goal >= 0.9)")


def kcat_env(brokers: str, tmp: Path) -> tuple[dict, str, bool] | None:
    """An environment in which kcat reaches `brokers`, kcat's librdkafka version, and whether that is the
    wheel's copy; None if no kcat can."""
    if not shutil.which("kcat"):
        return None
    import confluent_kafka

    # The wheel's copy of librdkafka, named as kcat links it.
    libdir = tmp / "librdkafka"
    libdir.mkdir(exist_ok=True)
    for lib in sorted((Path(confluent_kafka.__file__).parent.parent / "confluent_kafka.libs").glob("librdkafka*.so*")):
        (libdir / "librdkafka.so.1").unlink(missing_ok=True)
        (libdir / "librdkafka.so.1").symlink_to(lib)
    for bundled, env in ((False, dict(os.environ)), (True, {**os.environ, "LD_LIBRARY_PATH": str(libdir)})):
        done = subprocess.run(["kcat", "-b", brokers, "-L", "-m", "5"], capture_output=True, text=True, timeout=30,
                              env=env)
        if done.returncode == 0 and "broker" in done.stdout.lower():
            version = subprocess.run(["kcat", "-V"], capture_output=True, text=True, env=env).stdout
            found = re.search(r"librdkafka ([\d.]+)", version)
            return env, found.group(1) if found else "?", bundled
    return None


def kcat_produce(brokers: str, topic: str, tmp: Path, env: dict) -> float:
    data = tmp / "kcat.txt"
    data.write_bytes(b"".join(k + b"\t" + v + b"\n" for k, v in lines()))
    t0 = time.perf_counter()
    with open(data) as f:
        subprocess.run(["kcat", "-b", brokers, "-t", topic, "-P", "-K", "\t", "-X", "linger.ms=5"], stdin=f, check=True,
                       env=env)
    return N / (time.perf_counter() - t0)


def kcat_consume(brokers: str, topic: str, env: dict) -> float:
    """kcat -C reading the N messages from the beginning and writing their values to /dev/null."""
    t0 = time.perf_counter()
    subprocess.run(["kcat", "-b", brokers, "-t", topic, "-C", "-o", "beginning", "-c", str(N), "-e", "-q"],
                   stdout=subprocess.DEVNULL, check=True, env=env, timeout=600)
    return N / (time.perf_counter() - t0)


def fill_output(brokers: str, topic: str) -> None:
    from confluent_kafka import Producer

    p = Producer({"bootstrap.servers": brokers, "linger.ms": 20})
    now = int(time.time() * 1000)
    for i in range(N):
        while True:
            try:
                p.produce(topic, json.dumps({"identifier": i, "timestamp_start": now}).encode())
                break
            except BufferError:
                p.poll(0.01)
    p.flush(60)


def suite_consume(brokers: str, topic: str) -> float:
    t0 = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "monitors.kafka_latency", "--brokers", brokers, "--topic", topic,
                           "--start", "beginning", "--messages", str(N), "--group", f"bench-{time.time()}",
                           "--session-timeout-ms", "6000", "--idle-timeout", "30"], cwd=REPO, capture_output=True,
                          text=True, timeout=900)
    total = [x for x in done.stdout.splitlines() if x.startswith("[TOTAL]")][-1]
    assert f"- {N} msgs read" in total, total
    # The [TOTAL] rate runs from the first message read, so the group join is not counted.
    return float(re.findall(r"([\d.]+) msg/s", total)[-1]) if "msg/s" in total else N / (time.perf_counter() - t0)


def plain_consume(brokers: str, topic: str) -> float:
    from confluent_kafka import Consumer

    from plumbing.kafka_conf import READER_DEFAULTS

    # The same librdkafka settings as the suite's reader, so the ratio measures only the suite's work.
    c = Consumer({**READER_DEFAULTS, "bootstrap.servers": brokers, "group.id": f"plain-{time.time()}",
                  "auto.offset.reset": "earliest", "session.timeout.ms": 6000})
    c.subscribe([topic])
    n, t0 = 0, None
    deadline = time.monotonic() + 600
    while n < N:
        if time.monotonic() > deadline:
            raise RuntimeError(f"plain consumer read {n} of {N} messages in 600 s")
        batch = c.consume(1000, 1.0)
        if batch and t0 is None:
            t0 = time.perf_counter()
        for m in batch:
            if not m.error():
                json.loads(m.value())
                n += 1
    rate = N / (time.perf_counter() - t0)
    c.close()
    return rate


def _met(ratio: float, goal: float) -> str:
    return "met" if ratio >= goal else "NOT met"


def main() -> int:
    if sys.argv[1:2] == ["--plain"]:  # plain_produce_child's process
        print(plain_produce(sys.argv[2], sys.argv[3], int(sys.argv[4])))
        return 0
    with tempfile.TemporaryDirectory(prefix="bench-kafka-") as tmp:
        stack = Stack(Path(tmp) / "stack", free_ports=True)
        try:
            brokers = stack.start("kafka")["kafka"].url
            if ROUNDS:
                producer_rounds(brokers, Path(tmp), ROUNDS)
                if os.environ.get("BENCH_KAFKA_ROUNDS_ONLY"):
                    return 0
            subprocess.run([sys.executable, "-m", "targets.streams.topics", "--brokers", brokers, "b-plain", "b-suite",
                            "b-kcat", "b-out"], cwd=REPO, check=True, capture_output=True)
            native = kcat_env(brokers, Path(tmp))
            print(f"kcat usable: {bool(native)}; producing {N:,} messages per producer", file=sys.stderr, flush=True)
            plain_p = plain_produce(brokers, "b-plain")
            suite_p, suite_wall, _cpu = suite_produce(brokers, "b-suite", Path(tmp))
            kcat_p = kcat_produce(brokers, "b-kcat", Path(tmp), native[0]) if native else None
            fill_output(brokers, "b-out")
            plain_c = plain_consume(brokers, "b-out")
            suite_c = suite_consume(brokers, "b-out")
            kcat_c = kcat_consume(brokers, "b-out", native[0]) if native else None
        finally:
            stack.stop()
    if native:
        how = " (run on confluent-kafka's bundled library)" if native[2] else ""
        base = f"kcat with librdkafka {native[1]}{how}"
    else:
        base = "plain confluent-kafka loop (no kcat can talk to this broker)"
    print(f"Kafka, {N:,} messages of ~100 B, Tansu on loopback, 1 process each; baseline: {base}")
    print(f"{'producer':<48}{'msgs/s':>12}")
    print(f"{'locustfiles/kafka.py (10 users; Locust req/s)':<48}{suite_p:>12,.0f}")
    print(f"{'  same, whole process incl. start-up and exit':<48}{suite_wall:>12,.0f}")
    print(f"{'plain confluent-kafka loop, pre-encoded, keyed':<48}{plain_p:>12,.0f}")
    if kcat_p:
        print(f"{'kcat -P':<48}{kcat_p:>12,.0f}")
    if kcat_p:
        print(f"producer ratio suite/kcat = {suite_p / kcat_p:.2f} (goal >= 0.8: {_met(suite_p / kcat_p, 0.8)})")
    print(f"producer ratio suite/plain = {suite_p / plain_p:.2f}")
    print(f"{'consumer':<48}{'msgs/s':>12}")
    print(f"{'monitors.kafka_latency (TOTAL, from 1st msg)':<48}{suite_c:>12,.0f}")
    print(f"{'plain confluent-kafka consume loop (+json)':<48}{plain_c:>12,.0f}")
    if kcat_c:
        print(f"{'kcat -C (values to /dev/null)':<48}{kcat_c:>12,.0f}")
        print(f"consumer ratio suite/kcat = {suite_c / kcat_c:.2f} (goal >= 0.7: {_met(suite_c / kcat_c, 0.7)})")
    print(f"consumer ratio suite/plain = {suite_c / plain_c:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
