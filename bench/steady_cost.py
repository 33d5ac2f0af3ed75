"""The reference pipeline's CPU per event at a steady arrival rate, against the drain's (bench/pipeline.py):
what a capacity search meets that a drain of a prefilled queue does not.

    STEADY_CONFIGS=redis_bus:1:100:300,celery:1:100:150 python -m bench.steady_cost

For each backend:workers:batch:rate the pipeline starts on an empty entry point, the tracking
generator offers `rate` events/s into it (realistic mix, no end-to-end check, no monitor), and over
MEASURE_S seconds after WARM_S the pipeline's CPU (its processes, user + system) per event stored
is printed beside its stored rate. The drain's figure comes from the same events queued beforehand.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

from bench.pipeline import pipeline_rate, start_pipeline, tree_cpu_seconds
from plumbing import chclient
from stack import Stack

REPO = Path(__file__).resolve().parent.parent
WARM_S, MEASURE_S = 15, 30


def steady(backend: str, workers: int, batch: int, rate: float, ep: dict, home: Path) -> tuple[float, float]:
    """(stored events/s, pipeline CPU µs per stored event) at `rate` events/s offered."""
    prefix = f"s{uuid.uuid4().hex[:6]}"
    db, log_file, ready = f"xapi_{prefix}", home / f"{prefix}.log", home / f"{prefix}.ready"
    if backend == "kafka_bus":
        subprocess.run([sys.executable, "-m", "targets.streams.topics", "--brokers", ep["kafka"], f"{prefix}-analytics"],
                       cwd=REPO, check=True, capture_output=True)
    pipe = start_pipeline(backend, workers, batch, ep, prefix, log_file, ready)
    gen = None
    try:
        while not ready.exists():
            if pipe.poll() is not None:
                raise RuntimeError(f"the {backend} pipeline exited ({pipe.returncode})")
            time.sleep(0.1)
        gen = subprocess.Popen([str(Path(sys.executable).with_name("locust")), "-f", str(REPO / "locustfiles" / "tracking.py"),
                                "--headless", "-u", "400", "-r", "400", "--pipeline-backend", backend,
                                "--events-per-second", str(rate), "--run-until-killed", "--event-mix", "realistic",
                                "--no-e2e", "--no-monitor", "--no-sar", "--celery-broker-url", ep["redis"],
                                "--celery-queue", f"{prefix}.lms", "--event-bus-redis-url", ep["redis"],
                                "--kafka-bus-brokers", ep["kafka"], "--event-bus-prefix", prefix,
                                "--vector-log-file", str(log_file), "--loglevel", "WARNING"],
                               cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
        client = chclient.connect(ep["clickhouse"])
        time.sleep(WARM_S)

        def count() -> int:
            return client.execute(f"SELECT count() FROM {db}.xapi_events_all")[0][0]

        n0, c0, t0 = count(), tree_cpu_seconds(pipe.pid), time.monotonic()
        time.sleep(MEASURE_S)
        n1, c1, t1 = count(), tree_cpu_seconds(pipe.pid), time.monotonic()
        return (n1 - n0) / (t1 - t0), (c1 - c0) / max(n1 - n0, 1) * 1e6
    finally:
        for p in (gen, pipe):
            if p is not None and p.poll() is None:
                os.killpg(p.pid, 15)
                p.wait(timeout=60)


def main() -> int:
    configs = [c.split(":") for c in os.environ.get("STEADY_CONFIGS", "redis_bus:1:100:300").split(",")]
    print("| backend | workers | batch | offered ev/s | stored ev/s | pipeline CPU µs/event, steady | drain ev/s "
          "| pipeline CPU µs/event, drain | load 1/5 min |\n|---|---|---|---|---|---|---|---|---|", flush=True)
    with tempfile.TemporaryDirectory(prefix="steady-cost-") as tmp:
        home = Path(tmp)
        stack = Stack(home / "stack", free_ports=True)
        try:
            eps = stack.start("clickhouse", "redis", "kafka")
            ep = {"clickhouse": eps["clickhouse"].url, "redis": eps["redis"].url, "kafka": eps["kafka"].url}
            for backend, workers, batch, rate in configs:
                one, five, _ = os.getloadavg()
                stored, cpu = steady(backend, int(workers), int(batch), float(rate), ep, home)
                drain, drain_cpu, why = pipeline_rate(backend, int(workers), int(batch), ep, home)
                d = f"{drain:,.0f} | {drain_cpu:,.0f}" if drain else f"not measured ({why}) | -"
                print(f"| {backend} | {workers} | {batch} | {float(rate):g} | {stored:,.0f} | {cpu:,.0f} | {d} "
                      f"| {one:.1f}/{five:.1f} |", flush=True)
        finally:
            stack.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
