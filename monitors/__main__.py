"""Standalone monitor: `python -m monitors --monitor-backend redis_bus --monitor-interval 5`.
(`python -m monitors replay-spill list|replay|discard`: rows kept while a ClickHouse was unreachable.)

Mirrors Aspects' `monitor_load_test_tracking` without its defects: it waits for the newest
unfinished run started in the last minute in `load_test_runs` (or takes --run-id), samples
every --monitor-interval seconds on a fixed schedule (a slow sample never causes a negative sleep),
stops once the run's `end` row exists and every backlog is 0 (or --drain-timeout passes), and
takes every host, stream, topic and group from options. Same options and env as in Locust.
"""

from __future__ import annotations

import logging
import signal
import sys
import threading
import time

import configargparse

from lifecycle.exit_codes import ExitCode
from monitors import loop
from monitors import samplers as sampling_options
from monitors import sink as sinks
from monitors.figures import console_line, error_text
from monitors.loop import store_sample
from monitors.schema import check_database_name
from monitors.sink import Sink
from plumbing import chclient, logs, settings
from plumbing.options import non_negative_float, positive_float
from plumbing.redaction import redact

log = logging.getLogger("monitors")



def parser() -> configargparse.ArgumentParser:
    # A locust.conf (conf/tracking.conf) holds the generator's options too: the monitor takes its own
    # and passes over the rest, as "same options as in Locust" promises.
    p = configargparse.ArgumentParser(prog="python -m monitors", description=__doc__,
                                      formatter_class=configargparse.RawDescriptionHelpFormatter,
                                      ignore_unknown_config_file_keys=True)
    p.add_argument("--config", is_config_file=True, help="a config file with the options below (key = value)")
    p.add_argument("--run-id", default=settings.RUN_ID.default, env_var=settings.RUN_ID.env,
                   help="monitor this run (default: wait for one)")
    p.add_argument("--clickhouse-url", default=settings.CLICKHOUSE_URL.default,
                   env_var=settings.CLICKHOUSE_URL.env, help="ClickHouse holding the run tables")
    p.add_argument("--monitor-database", default=settings.MONITOR_DATABASE.default,
                   env_var=settings.MONITOR_DATABASE.env)
    # --sleep-time: its former name (LOCUST_SLEEP_TIME is the tracking generator's pause between events).
    p.add_argument("--monitor-interval", "--sleep-time", dest="monitor_interval", type=positive_float,
                   default=float(settings.MONITOR_INTERVAL.default), env_var=settings.MONITOR_INTERVAL.env,
                   help="seconds between samples (default %(default)g), as in Locust")
    p.add_argument("--drain-timeout", type=non_negative_float, default=float(settings.DRAIN_TIMEOUT.default),
                   env_var=settings.DRAIN_TIMEOUT.env,
                   help="after the run's end row, sample until drained or this many seconds (default %(default)g)")
    p.add_argument("--wait-timeout", type=non_negative_float, default=0.0, env_var="LOCUST_WAIT_TIMEOUT",
                   help="give up waiting for a run after this many seconds (default %(default)g: wait forever)")
    sinks.add_arguments(p)  # --spill-dir and the timeouts
    sampling_options.add_arguments(p)
    return p


FIND_RUN = (
    "SELECT run_id FROM {db}.load_test_runs WHERE event_type = 'start' AND timestamp >= now() - 60 "
    "AND run_id NOT IN (SELECT run_id FROM {db}.load_test_runs WHERE event_type = 'end') "
    "ORDER BY timestamp DESC LIMIT 1"
)
HAS_ENDED = "SELECT count() FROM {db}.load_test_runs WHERE run_id = %(r)s AND event_type = 'end'"


class EndWatch:
    """Looks for the run's end row every `interval` s in a thread of its own, so a hung ClickHouse
    never holds up the sampling; `ended_at` is the monotonic time the end was first seen."""

    def __init__(self, sink: Sink, database: str, run_id: str, interval: float) -> None:
        self.sink, self.database, self.run_id, self.interval = sink, database, run_id, interval
        self.ended_at: float | None = None
        self.stopped = threading.Event()
        threading.Thread(target=self._watch, name="end-watch", daemon=True).start()

    def _watch(self) -> None:
        failing = False
        while not self.stopped.is_set():
            try:
                if self.sink.query(HAS_ENDED.format(db=self.database), {"r": self.run_id})[0][0]:
                    self.ended_at = time.monotonic()
                    log.info("run %s has ended; waiting for the pipeline to drain (Ctrl-C to stop)", self.run_id)
                    return
                failing = False
            except Exception as exc:  # noqa: BLE001 - said once per outage; the sink reports the outage
                if not failing:
                    log.warning("cannot check the end of the run: %s", error_text(exc))
                failing = True
            self.stopped.wait(self.interval)


class Unreachable(Exception):
    """ClickHouse did not answer for the whole --wait-timeout."""


def wait_for_run(sink: Sink, database: str, timeout: float) -> str | None:
    """The newest unfinished run; None after `timeout` s (0: never) without one.

    Raises Unreachable when the timeout passes while ClickHouse does not answer: the run may
    well have started, the monitor cannot tell.
    """
    t0, last_log, down_since, error = time.monotonic(), 0.0, None, ""
    while True:
        now = time.monotonic()
        try:
            rows = sink.query(FIND_RUN.format(db=database))
            if rows:
                return rows[0][0]
            if down_since is not None:
                log.info("ClickHouse %s is back after %.0f s", redact(sink.url), now - down_since)
                down_since, last_log = None, 0.0
            if now - last_log > 60:
                log.info("no unfinished run started in the last 60 s yet; waiting")
                last_log = now
        except Exception as exc:  # noqa: BLE001 - ClickHouse not up yet: keep waiting
            error = error_text(exc)
            if down_since is None:
                down_since = last_log = now
                log.warning("ClickHouse %s unreachable (%s); waiting for it", redact(sink.url), error)
            elif now - last_log >= 30:
                last_log = now
                log.warning("ClickHouse %s still unreachable after %.0f s (%s)", redact(sink.url), now - down_since,
                            error)
        if timeout and time.monotonic() - t0 > timeout:
            if down_since is not None:
                raise Unreachable(error)
            return None
        time.sleep(min(2.0, max(0.1, timeout - (time.monotonic() - t0))) if timeout else 2.0)


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    logs.setup()
    if argv is None:
        argv = sys.argv[1:]
    if argv[:1] == ["replay-spill"]:
        from monitors import spill

        return spill.main(argv[1:])
    args = parser().parse_args(argv)
    try:
        sampling_options.parse_backends(args.monitor_backend)
        sampling_options.timeouts(args, args.monitor_interval)
        chclient.parse_url(args.clickhouse_url)
        check_database_name(args.monitor_database)
        samplers = sampling_options.build_samplers(args)  # bad sampler URLs fail here, before any waiting
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return ExitCode.BAD_OPTION
    sink = Sink(args.clickhouse_url, args.monitor_database, args.spill_dir, name=f"standalone-{int(time.time())}",
                connect_timeout=args.clickhouse_connect_timeout, timeout=args.clickhouse_timeout)
    try:
        run_id = args.run_id or wait_for_run(sink, args.monitor_database, args.wait_timeout)
        if not run_id:
            print(f"error: no run started within --wait-timeout {args.wait_timeout:g} s", file=sys.stderr)
    except Unreachable as exc:
        print(f"error: --clickhouse-url {redact(args.clickhouse_url)}: ClickHouse unreachable for the whole "
              f"--wait-timeout {args.wait_timeout:g} s ({exc})", file=sys.stderr)
        run_id = None
    except KeyboardInterrupt:
        loop.close_all(samplers)
        return ExitCode.SIGINT
    if not run_id:
        loop.close_all(samplers)
        return ExitCode.ERRORS  # no run
    log.info("monitoring run %s: %s every %.1f s", run_id, ", ".join(samplers), args.monitor_interval)
    sampling = loop.Sampling(samplers, sampling_options.timeouts(args, args.monitor_interval))
    stop = {"now": False}
    signal.signal(signal.SIGTERM, lambda *_: stop.update(now=True))
    drained = interrupted = False
    t_start = time.time()
    next_t = time.monotonic()
    # Rows go out from the sink's writer and the end row is looked for by the watch: both in threads
    # of their own, so a hung ClickHouse never holds up a sample (each sampler has its timeout).
    sink.start()
    watch = EndWatch(sink, args.monitor_database, run_id, args.monitor_interval)
    try:
        while not stop["now"]:
            taken_at = time.monotonic()
            ended_at = watch.ended_at
            now, stats, backlog = sampling.take()
            store_sample(sink, run_id, now, stats, backlog)
            sink.wake()
            log.info(console_line(run_id, stats, backlog, ended_at is not None))
            # Only a sample taken after the end was seen judges the drain: one taken before may predate
            # the run's last events.
            outcome = None if ended_at is None or taken_at < ended_at else \
                loop.drain_outcome(sampling, time.monotonic() - ended_at, args.drain_timeout, "the run ended")
            if outcome is not None:
                drained, text = outcome
                (log.info if drained else log.warning)(text)
                break
            next_t = max(next_t + args.monitor_interval, time.monotonic())
            time.sleep(max(0.0, next_t - time.monotonic()))
    except KeyboardInterrupt:
        log.info("interrupted")
        interrupted = True
    finally:
        watch.stopped.set()
        sampling.close()
        sink.close()
    log.info("monitored run %s from %s for %.0f s", run_id, time.strftime("%H:%M:%S", time.gmtime(t_start)),
             time.time() - t_start)
    if interrupted or stop["now"]:
        return ExitCode.SIGINT if interrupted else ExitCode.SIGTERM
    return ExitCode.OK if drained else ExitCode.DRAIN


if __name__ == "__main__":
    sys.exit(main())
