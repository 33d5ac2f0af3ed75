"""Run the reference pipeline for one backend until SIGTERM/Ctrl-C.

    python -m targets.pipeline celery    --broker-url redis://… --clickhouse-url clickhouse://… --workers 2
    python -m targets.pipeline redis_bus --redis-url redis://… --workers 2 --batch-size 100
    python -m targets.pipeline kafka_bus --kafka-brokers 127.0.0.1:9092 --workers 2
    python -m targets.pipeline vector    --log-file .run/tracking.log --metrics-port 9598

Workers: Celery threads for celery, consumer processes in one group for redis_bus/kafka_bus;
vector has one tailer (one Vector instance). Every backend inserts into --xapi-database.--xapi-table.
"""

from __future__ import annotations

import argparse
import logging
import multiprocessing
import os
import signal
import subprocess
import sys
from pathlib import Path

from plumbing import chclient, settings
from plumbing.kafka_conf import client_config
from plumbing.redaction import redact
from targets.pipeline import consumers
from targets.pipeline.router import Router, Store
from targets.streams import topics

log = logging.getLogger("pipeline")


def quiet_client_logs() -> None:
    """clickhouse-driver logs every refused connection with a traceback; our one-line errors say it."""
    from plumbing import logs

    logs.setup()


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m targets.pipeline", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("backend", help="one of " + ", ".join(BACKENDS))
    p.add_argument("--workers", type=int, default=1, help="Celery threads / consumer processes (default 1)")
    p.add_argument("--batch-size", type=int, default=100, help="events per ClickHouse insert (default 100)")
    p.add_argument("--batch-interval", type=float, default=5.0, help="seconds before a partial batch goes (default 5)")
    # Defaults from the suite's environment variables, as the generator reads them (stack.env).
    p.add_argument("--clickhouse-url", default=settings.CLICKHOUSE_URL.resolve())
    p.add_argument("--xapi-database", default=settings.XAPI_DATABASE.resolve())
    p.add_argument("--xapi-table", default=settings.XAPI_TABLE.resolve())
    p.add_argument("--backend-name", default="xapi",
                   help="ERB backend name: batch lists events_router_queue_<name>, dead_queue_<name> (default xapi)")
    p.add_argument("--redis-url", default=settings.REDIS_URL.resolve(),
                   help="ERB's batch lists, and the stream for redis_bus")
    p.add_argument("--broker-url", default=None, help="Celery broker (default: --redis-url)")
    p.add_argument("--queues", default="edx.lms.core.default,edx.cms.core.default", help="Celery queues")
    p.add_argument("--topic-prefix", default="dev", help="EVENT_BUS_TOPIC_PREFIX: stream/topic <prefix>-analytics")
    p.add_argument("--group", default="event_routing_backends", help="consumer group")
    p.add_argument("--kafka-brokers", default=settings.KAFKA_BROKERS.resolve())
    p.add_argument("--session-timeout-ms", type=int, default=None)
    p.add_argument("--partitions", type=int, default=4,
                   help="kafka_bus: partitions of the topic if it does not exist yet (default %(default)s)")
    p.add_argument("--log-file", type=Path, default=Path(settings.VECTOR_LOG_FILE.default),
                   help="vector: the log to tail (default the generator's: the checkout's .run/tracking.log)")
    p.add_argument("--checkpoint", type=Path, default=None, help="vector: read position (default <log>.offset)")
    p.add_argument("--metrics-port", type=int, default=0, help="vector: serve sink counters (Prometheus) here")
    p.add_argument("--ready-file", type=Path, default=None, help="touched once consuming")
    return p


def _bus_worker(a, index: int, joined=None) -> None:
    # force: a forked worker inherits the parent's handler, whose lines would not say which worker
    logging.basicConfig(level=logging.INFO, format=f"%(asctime)s pipeline[{a.backend}#{index}] %(message)s", force=True)
    quiet_client_logs()
    stop = consumers.stop_event()
    router = Router(a.redis_url, Store(a.clickhouse_url, a.xapi_database, a.xapi_table), a.batch_size,
                    a.batch_interval, a.backend_name, stopping=stop)
    router.start_timer()
    try:
        topic = f"{a.topic_prefix}-analytics"
        if a.backend == "redis_bus":
            consumers.run_redis_bus(router, a.redis_url, topic, a.group, stop)
        else:
            conf = client_config(a.kafka_brokers)
            if a.session_timeout_ms:
                conf["session.timeout.ms"] = a.session_timeout_ms
            consumers.run_kafka_bus(router, conf, topic, a.group, stop, assigned=joined.set if joined else None)
    finally:
        router.stop()


def _run_celery(a) -> int:
    """A Celery worker (threads) on the queues: the LMS's event_transformer tasks, ERB's batching."""
    env = {**os.environ, "PIPELINE_BROKER_URL": a.broker_url or a.redis_url, "PIPELINE_REDIS_URL": a.redis_url,
           "PIPELINE_CLICKHOUSE_URL": a.clickhouse_url, "PIPELINE_XAPI_DATABASE": a.xapi_database,
           "PIPELINE_XAPI_TABLE": a.xapi_table, "PIPELINE_BATCH_SIZE": str(a.batch_size),
           "PIPELINE_BATCH_INTERVAL": str(a.batch_interval), "PIPELINE_BACKEND_NAME": a.backend_name}
    if a.ready_file:
        env["PIPELINE_READY_FILE"] = str(a.ready_file)
    cmd = [sys.executable, "-m", "celery", "-A", "targets.pipeline.celery_app", "worker", "-Q", a.queues,
           "-P", "threads", "-c", str(a.workers), "--without-gossip", "--without-mingle", "--without-heartbeat",
           "-l", "WARNING", "-n", f"pipeline-{os.getpid()}@%h"]
    proc = subprocess.Popen(cmd, env=env)
    stop = consumers.stop_event(grace=consumers.STOP_GRACE + 5)  # Celery's own warm shutdown first
    stop.wait()
    proc.terminate()
    try:
        return proc.wait(timeout=consumers.STOP_GRACE)
    except subprocess.TimeoutExpired:  # a task blocked on a server that does not answer
        log.error("the Celery worker still runs %.0f s after SIGTERM; killed", consumers.STOP_GRACE)
        proc.kill()
        proc.wait()
        return 128 + signal.SIGTERM


def _run_vector(a) -> int:
    """One tailer of the log file, as one Vector instance."""
    stop = consumers.stop_event()
    counters = consumers.VectorCounters()
    if a.metrics_port:
        counters.serve(a.metrics_port)
    if a.ready_file:
        a.ready_file.touch()
    consumers.run_vector(Store(a.clickhouse_url, a.xapi_database, a.xapi_table), a.log_file,
                         a.checkpoint or a.log_file.with_name(a.log_file.name + ".offset"), a.batch_size,
                         a.batch_interval, stop, counters)
    return 0


def _run_bus(a) -> int:
    """Consumer processes in one group (redis_bus, kafka_bus)."""
    if a.backend == "redis_bus":
        # The group exists before the ready file (each worker would create it only once started):
        # events sent right after "ready" wait for the workers, even ones stopped before they joined.
        consumers.create_redis_group(a.redis_url, f"{a.topic_prefix}-analytics", a.group)
    else:
        # The topic exists before the consumers subscribe, as in a deployment: a group subscribed to a
        # missing topic gets no partitions until its next metadata refresh (5 min by default), so
        # the events of a producer that auto-creates it would wait there.
        topics.ensure(client_config(a.kafka_brokers), [f"{a.topic_prefix}-analytics"], a.partitions)
    # kafka_bus: consuming once every worker has had its partitions assigned (the group's join takes
    # group.initial.rebalance.delay.ms on Kafka, more on some brokers): events sent after "ready" are
    # then read at once, not held in the topic for the join's seconds as if the pipeline were slow.
    joined = [multiprocessing.Event() if a.backend == "kafka_bus" else None for _ in range(a.workers)]
    procs = [multiprocessing.Process(target=_bus_worker, args=(a, i, joined[i]), daemon=False) for i in range(a.workers)]
    for p in procs:
        p.start()
    stop = consumers.stop_event(grace=consumers.STOP_GRACE + 5)  # the workers' own grace first
    for p, j in zip(procs, joined, strict=True):
        while j is not None and not j.wait(0.2) and p.is_alive() and not stop.is_set():
            pass
    if a.ready_file and not stop.is_set():
        a.ready_file.touch()
    stop.wait()
    for p in procs:
        if p.pid:
            os.kill(p.pid, signal.SIGTERM)
    for p in procs:
        p.join()
    return 0


# The backends this reference pipeline consumes, and how.
RUNNERS = {"celery": _run_celery, "redis_bus": _run_bus, "kafka_bus": _run_bus, "vector": _run_vector}
BACKENDS = tuple(RUNNERS)


def main(argv: list[str] | None = None) -> int:
    a = parser().parse_args(argv)
    checks = [
        (a.backend in BACKENDS, f"backend {a.backend!r}: expected one of {', '.join(BACKENDS)}"),
        (a.workers >= 1, f"--workers {a.workers}: expected at least 1"),
        (a.batch_size >= 1, f"--batch-size {a.batch_size}: expected at least 1"),
        (a.batch_interval > 0, f"--batch-interval {a.batch_interval}: expected seconds > 0"),
        (a.partitions >= 1, f"--partitions {a.partitions}: expected at least 1"),
    ]
    for ok, message in checks:
        if not ok:
            print(f"error: {message}", file=sys.stderr)
            return 2
    quiet_client_logs()
    try:
        chclient.parse_url(a.clickhouse_url)
        Store(a.clickhouse_url, a.xapi_database, a.xapi_table).ensure_table()
    except Exception as exc:  # noqa: BLE001 - one line: what is wrong with the ClickHouse given
        print(f"error: ClickHouse {redact(a.clickhouse_url)}: {str(exc).splitlines()[0]}", file=sys.stderr)
        return 2
    logging.basicConfig(level=logging.INFO, format=f"%(asctime)s pipeline[{a.backend}] %(message)s")
    quiet_client_logs()  # again, now that the root logger has its handler to redact

    return RUNNERS[a.backend](a)


if __name__ == "__main__":
    sys.exit(main())
