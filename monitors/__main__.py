"""Standalone monitor: `python -m monitors --monitor-backend redis_bus --sleep-time 5`.

Mirrors Aspects' `monitor_load_test_tracking` without its defects: it waits for the newest
unfinished run started in the last minute in `load_test_runs` (or takes --run-id), samples
every --sleep-time seconds on a fixed schedule (a slow sample never causes a negative sleep),
stops once the run's `end` row exists and every backlog is 0 (or --drain-timeout passes), and
takes every host, stream, topic and group from options. Same options and env as in Locust.
"""

from __future__ import annotations

import json
import logging
import signal
import sys
import time

import configargparse

from monitors import backends, chclient
from monitors.figures import console_line, error_text, flatten
from monitors.schema import check_database_name
from monitors.sink import Sink

log = logging.getLogger("monitors")

EXIT_NOT_DRAINED = 6


def parser() -> configargparse.ArgumentParser:
    p = configargparse.ArgumentParser(prog="python -m monitors", description=__doc__,
                                      formatter_class=configargparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", is_config_file=True, help="a config file with the options below (key = value)")
    p.add_argument("--run-id", default="", env_var="LOCUST_RUN_ID", help="monitor this run (default: wait for one)")
    p.add_argument("--clickhouse-url", default="clickhouse://default@127.0.0.1:19000/default",
                   env_var="LOCUST_CLICKHOUSE_URL", help="ClickHouse holding the run tables")
    p.add_argument("--monitor-database", default="event_sink", env_var="LOCUST_MONITOR_DATABASE")
    p.add_argument("--sleep-time", type=float, default=5.0, env_var="LOCUST_SLEEP_TIME",
                   help="seconds between samples (default 5)")
    p.add_argument("--drain-timeout", type=float, default=300.0, env_var="LOCUST_DRAIN_TIMEOUT",
                   help="after the run's end row, sample until drained or this many seconds (default 300)")
    p.add_argument("--wait-timeout", type=float, default=0.0, env_var="LOCUST_WAIT_TIMEOUT",
                   help="give up waiting for a run after this many seconds (default 0: wait forever)")
    p.add_argument("--spill-dir", default=".run/monitor-spill", env_var="LOCUST_SPILL_DIR")
    backends.add_arguments(p)
    return p


FIND_RUN = (
    "SELECT run_id FROM {db}.load_test_runs WHERE event_type = 'start' AND timestamp >= now() - 60 "
    "AND run_id NOT IN (SELECT run_id FROM {db}.load_test_runs WHERE event_type = 'end') "
    "ORDER BY timestamp DESC LIMIT 1"
)
HAS_ENDED = "SELECT count() FROM {db}.load_test_runs WHERE run_id = %(r)s AND event_type = 'end'"


def wait_for_run(sink: Sink, database: str, timeout: float) -> str | None:
    t0, last_log = time.monotonic(), 0.0
    while True:
        try:
            rows = sink.query(FIND_RUN.format(db=database))
            if rows:
                return rows[0][0]
        except Exception as exc:  # noqa: BLE001 - ClickHouse not up yet: keep waiting
            rows = None
            if time.monotonic() - last_log > 60:
                log.warning("waiting for ClickHouse: %s", error_text(exc))
        if time.monotonic() - last_log > 60:
            log.info("no unfinished run started in the last 60 s yet; waiting")
            last_log = time.monotonic()
        if timeout and time.monotonic() - t0 > timeout:
            return None
        time.sleep(2)


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    args = parser().parse_args(argv)
    try:
        backends.parse_backends(args.monitor_backend)
        chclient.parse_url(args.clickhouse_url)
        check_database_name(args.monitor_database)
        if not args.sleep_time > 0:
            raise ValueError(f"--sleep-time {args.sleep_time}: expected seconds > 0")
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    sink = Sink(args.clickhouse_url, args.monitor_database, args.spill_dir, name=f"standalone-{int(time.time())}")
    run_id = args.run_id or wait_for_run(sink, args.monitor_database, args.wait_timeout)
    if not run_id:
        print(f"error: no run started within --wait-timeout {args.wait_timeout} s", file=sys.stderr)
        return 1
    samplers = backends.build_samplers(args)
    log.info("monitoring run %s: %s every %.1f s", run_id, ", ".join(samplers), args.sleep_time)
    stop = {"now": False}
    signal.signal(signal.SIGTERM, lambda *_: stop.update(now=True))
    ended_at = None
    drained = False
    t_start = time.time()
    next_t = time.monotonic()
    try:
        while not stop["now"]:
            now = time.time()
            stats, backlog, unknown = {}, 0, False
            for name, s in samplers.items():
                try:
                    sample = s.sample()
                    b = s.backlog(sample)
                    backlog += b or 0
                except Exception as exc:  # noqa: BLE001 - reported, retried next sample
                    sample = {"error": error_text(exc)}
                    unknown = unknown or getattr(s, "drains", True)
                stats[name] = sample
            sink.add("load_test_stats", {"run_id": run_id, "timestamp": now, "stats": json.dumps(stats)})
            for source, sample in stats.items():
                for metric, value in flatten(sample):
                    sink.add("load_test_samples", {"run_id": run_id, "timestamp": now, "time_ms": int(now * 1000),
                                                   "source": source, "metric": metric, "value": value})
            sink.flush()
            log.info(console_line(run_id, stats, -1 if unknown else backlog, ended_at is not None))
            if ended_at is None:
                try:
                    if sink.query(HAS_ENDED.format(db=args.monitor_database), {"r": run_id})[0][0]:
                        ended_at = time.monotonic()
                        log.info("run %s has ended; waiting for the pipeline to drain (Ctrl-C to stop)", run_id)
                except Exception as exc:  # noqa: BLE001
                    log.warning("cannot check the end of the run: %s", error_text(exc))
            if ended_at is not None:
                if not unknown and backlog == 0:
                    drained = True
                    log.info("drained %.1f s after the run ended", time.monotonic() - ended_at)
                    break
                if time.monotonic() - ended_at > args.drain_timeout:
                    log.warning("not drained %.0f s after the run ended (backlog %s)", args.drain_timeout, backlog)
                    break
            next_t = max(next_t + args.sleep_time, time.monotonic())
            time.sleep(max(0.0, next_t - time.monotonic()))
    except KeyboardInterrupt:
        log.info("interrupted")
    finally:
        for s in samplers.values():
            s.close()
        sink.close()
    log.info("monitored run %s from %s for %.0f s", run_id, time.strftime("%H:%M:%S", time.gmtime(t_start)),
             time.time() - t_start)
    return 0 if drained else EXIT_NOT_DRAINED


if __name__ == "__main__":
    sys.exit(main())
