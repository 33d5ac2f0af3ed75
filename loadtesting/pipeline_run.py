"""``python -m loadtesting.pipeline_run BACKEND``: the reference pipeline around one generator run.

Starts ``python -m targets.pipeline BACKEND`` against the local stack (its URLs come from the
environment that ``.run/stack/stack.env`` sets), waits until it consumes, runs
``python -m loadtesting.run tracking`` with the monitor on that backend, stops the pipeline and
exits with the run's exit code. ``make pipeline-test`` and ``make demo`` use it; with ``--capacity``
(``make pipeline-capacity``) the run is a capacity search over events/s instead of a fixed rate
(docs/capacity.md), and further ``--capacity-*`` options go to it.
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import backends
from plumbing import redis_util, settings
from plumbing.ports import free_port

REPO = Path(__file__).resolve().parent.parent
BACKENDS = backends.having("REFERENCE_CONSUMER")  # the backends with a reference pipeline of ours


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m loadtesting.pipeline_run", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("backend", nargs="?", default="redis_bus", help=f"one of {', '.join(BACKENDS)} (default %(default)s)")
    p.add_argument("--events", type=int, default=20_000)
    p.add_argument("--eps", type=float, default=1000.0, help="events per second")
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--batch", type=int, default=100)
    p.add_argument("--run-dir", type=Path, default=REPO / ".run")
    p.add_argument("--capacity", action="store_true",
                   help="search the events/s the pipeline sustains (--capacity-search) instead of --events/--eps")
    p.add_argument("--users", type=int, default=400,
                   help="open-model users of a search: concurrent sends, enough for a stall of the machine at the "
                        "highest rate (default %(default)s)")
    p.add_argument("--prefix", default="dev",
                   help="EVENT_BUS_TOPIC_PREFIX: the bus's stream/topic <prefix>-analytics, for the pipeline and the "
                        "generator (default %(default)s)")
    p.add_argument("--group", default="event_routing_backends",
                   help="the consumer group of a bus backend's pipeline (and of its lag sampler) (default %(default)s)")
    a, extra = p.parse_known_args(argv)
    if a.backend not in BACKENDS:
        print(f"error: backend {a.backend!r}: expected one of {', '.join(BACKENDS)}", file=sys.stderr)
        return 2
    ch = settings.CLICKHOUSE_URL.resolve()
    redis_url = redis_util.default_url()
    brokers = settings.KAFKA_BROKERS.resolve()
    a.run_dir = a.run_dir.resolve()  # the pipeline and the generator start in other folders: one absolute path
    log_file = a.run_dir / "tracking.log"
    ready = a.run_dir / "pipeline.ready"
    for f in (log_file, log_file.with_name("tracking.log.offset")):
        f.unlink(missing_ok=True)
    a.run_dir.mkdir(parents=True, exist_ok=True)
    metrics_port = free_port()  # the pipeline's /metrics: free, so two checkouts' pipelines can run side by side
    pipeline = [sys.executable, "-m", backends.get(a.backend).REFERENCE_CONSUMER, a.backend, "--workers", str(a.workers),
                "--batch-size", str(a.batch), "--clickhouse-url", ch, "--redis-url", redis_url,
                "--kafka-brokers", brokers, "--log-file", str(log_file),
                "--metrics-port", str(metrics_port), "--ready-file", str(ready), "--group", a.group,
                "--topic-prefix", a.prefix]
    # The bus backlog is sampled for every backend (kafka_bus: the group's lag; docs/capacity.md says why
    # Tansu's high watermark, short of the end by at most the last produce batch, does not matter).
    monitor = ["--monitor-backend", a.backend]
    data = REPO / ".run" / "stack" / "clickhouse"
    # A search sets the rate itself: the config's fixed-run rate is not for it (its count is not used).
    load = (["--capacity-search", "-u", str(a.users), "-r", str(a.users), "--events-per-second", "0"] if a.capacity
            else ["--num-events", str(a.events), "--events-per-second", str(a.eps)])
    cmd = [sys.executable, "-m", "loadtesting.run", "tracking", "--pipeline-backend", a.backend, *monitor,
           *load, "--vector-log-file", str(log_file),
           "--vector-metrics-url", f"http://127.0.0.1:{metrics_port}/metrics", "--kafka-bus-brokers", brokers,
           "--kafka-bus-group", a.group, "--event-bus-prefix", a.prefix, "--run-tags", f"pipeline,{a.backend},{a.workers}-workers,batch{a.batch}{',capacity' if a.capacity else ''}",
           *(["--clickhouse-data-path", str(data)] if data.is_dir() else []), *extra]
    # A Kafka group's join takes seconds (group.initial.rebalance.delay.ms); on Tansu half of
    # session.timeout.ms (45 s by default), once per join round: the pipeline is ready once joined.
    return run_beside(pipeline, ready, f"the {a.backend} reference pipeline", cmd, timeout=150)


def run_to_end(command: list[str]) -> int:
    """Run `command` in the checkout and return its exit code. Ctrl-C reaches it too (one process
    group): it ends as it decides (a run finishes its folder and end rows), never killed from here."""
    proc = subprocess.Popen(command, cwd=REPO)
    while True:
        try:
            return proc.wait()
        except KeyboardInterrupt:
            continue


def run_beside(system: list[str], ready: Path, what: str, command: list[str], timeout: float = 60,
               log: Path | None = None) -> int:
    """Start `system` (a reference system that touches `ready` once it consumes), run `command` once it
    is ready and return its exit code; `system` (its process group) gets SIGTERM however it ends.
    Exit 1 if `system` ends or is not ready within `timeout` s."""
    ready.unlink(missing_ok=True)
    out = open(log, "wb") if log is not None else None  # noqa: SIM115 - closed below, after the process
    proc = subprocess.Popen(system, cwd=REPO, start_new_session=True, stdout=out, stderr=subprocess.STDOUT if out else None)
    try:
        deadline = time.monotonic() + timeout
        while not ready.exists():
            if proc.poll() is not None or time.monotonic() > deadline:
                print(f"error: {what} did not start (exit {proc.poll()}"
                      f"{f'; its log: {log}' if log is not None else ''})", file=sys.stderr)
                return 1
            time.sleep(0.1)
        return run_to_end(command)
    except KeyboardInterrupt:  # while waiting for it to be ready
        return 130
    finally:
        if proc.poll() is None:
            try:
                os.killpg(proc.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass  # it ended meanwhile
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        if out is not None:
            out.close()


if __name__ == "__main__":
    sys.exit(main())
