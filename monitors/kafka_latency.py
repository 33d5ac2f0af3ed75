"""End-to-end latency of a Kafka stream pipeline: `python -m monitors.kafka_latency --topic OUT`.

Reads the pipeline's output topic; each output message is JSON carrying `timestamp_start`, the
input message's Kafka timestamp in milliseconds (the stream processor copies it, as in the seed
tool). Latency = output message timestamp − timestamp_start, in ms. Prints the seed's rolling
windows with correct averages plus percentiles and rate:

    [STAT 100] - 100 msgs, avg 12.31 ms, p50 12 p95 17 p99 19 ms, 2310.5 msg/s
    [STAT 1K] …   [STAT 10K] …   [STAT 100K] …
    [TOTAL] - 1000 msgs read, avg 12.40 ms, p50 … ms, 2290.3 msg/s; errors: 0 negative, 0 in seconds, 0 invalid; 0 duplicates

Windows are exact. TOTAL's percentiles come from a histogram: exact to 1 ms below 10 s (Kafka
timestamps are whole milliseconds), three significant digits above; its average and maximum are
exact. Memory stays bounded however long the run (LatencyStats).

It starts at the end of the topic (or --start committed|beginning|time:<epoch ms>), commits its
offsets, reports the timestamp type it saw (LogAppendTime or CreateTime), refuses to mix a
`timestamp_start` written in seconds into the figures, and counts negative deltas as errors.
Inside Locust (`locustfiles/kafka.py --kafka-latency-topic`) each delta goes into an E2E row (monitors.e2e).
"""

from __future__ import annotations

import json
import logging
import math
import signal
import sys
import time
from bisect import bisect_right
from collections.abc import Callable
from dataclasses import dataclass

from monitors.schema import check_database_name
from plumbing import histogram, kafka_conf, settings
from plumbing.percentile import percentile

log = logging.getLogger("monitors.kafka_latency")

WINDOWS = ((100, "100"), (1_000, "1K"), (10_000, "10K"), (100_000, "100K"))
WINDOW_STEP = math.gcd(*(size for size, _ in WINDOWS), 1000)  # 1000: the running total's period
SECONDS_LIMIT = 1e11  # an epoch below this is seconds (1e11 ms = 1973; 1e11 s = year 5138)


@dataclass
class Window:
    label: str
    size: int
    started: float = 0.0  # set by the window's first delta, so waiting for traffic is not counted

    def summary(self, deltas: list[float]) -> dict:
        d = sorted(deltas)
        secs = max(time.monotonic() - self.started, 1e-9) if self.started else 1e-9
        return {"window": self.label, "messages": len(d), "avg_ms": sum(d) / len(d) if d else 0.0,
                "p50_ms": percentile(d, 0.50), "p95_ms": percentile(d, 0.95), "p99_ms": percentile(d, 0.99),
                "max_ms": d[-1] if d else 0.0, "msgs_per_s": len(d) / secs}


def format_window(s: dict) -> str:
    return (f"[STAT {s['window']}] - {s['messages']} msgs, avg {s['avg_ms']:.2f} ms, p50 {s['p50_ms']:g} "
            f"p95 {s['p95_ms']:g} p99 {s['p99_ms']:g} ms, {s['msgs_per_s']:.1f} msg/s")


RECENT = max(size for size, _ in WINDOWS)  # deltas kept: the largest window's
MAX_OPAQUE_IDS = 1_000_000  # ids that are no (producer, integer sequence) pair: the newest this many are checked


class SeqRanges:
    """The sequence numbers seen from one producer, as sorted disjoint ranges [start, end]: memory grows
    with the gaps (messages not seen yet), not with the messages; in-order arrival extends the last range."""

    __slots__ = ("starts", "ends")

    def __init__(self) -> None:
        self.starts: list[int] = []
        self.ends: list[int] = []

    def add(self, seq: int) -> bool:
        """True when `seq` is new (and now recorded), False when it was seen before."""
        starts, ends = self.starts, self.ends
        if ends and seq == ends[-1] + 1:
            ends[-1] = seq
            return True
        i = bisect_right(starts, seq) - 1  # the range starting at or before seq
        if i >= 0 and seq <= ends[i]:
            return False
        left = i >= 0 and seq == ends[i] + 1
        right = i + 1 < len(starts) and seq == starts[i + 1] - 1
        if left and right:  # fills the gap between two ranges
            ends[i] = ends[i + 1]
            del starts[i + 1], ends[i + 1]
        elif left:
            ends[i] = seq
        elif right:
            starts[i + 1] = seq
        else:
            starts.insert(i + 1, seq)
            ends.insert(i + 1, seq)
        return True

    def __len__(self) -> int:
        return len(self.starts)


class LatencyStats:
    """Rolling windows of 100/1K/10K/100K deltas, each exact over exactly its deltas, and a TOTAL
    from a histogram (plumbing.histogram.latency_bucket: exact to 1 ms below 10 s, three significant
    digits above; average and maximum exact). Memory is bounded by the windows: the last RECENT to
    2×RECENT deltas, a histogram of at most ~12,000 buckets, and duplicates checked per producer as
    ranges of sequence numbers (SeqRanges), however long the run."""

    def __init__(self, on_window: Callable[[dict], None] | None = None,
                 on_total: Callable[[str], None] | None = None) -> None:
        self.windows = [Window(label, size) for size, label in WINDOWS]
        self.recent: list[float] = []  # the newest deltas; recent[0] is delta number `_dropped`
        self._dropped = 0
        self.hist: dict[int, int] = {}  # every delta so far, by bucket (plumbing.histogram)
        self._folded = 0  # deltas counted into hist, sum and max
        self._sum = 0.0
        self._max = 0.0
        self.negative = self.in_seconds = self.invalid = self.duplicates = 0
        self.timestamp_types: dict[str, int] = {}
        self.on_window = on_window or (lambda s: print(format_window(s), flush=True))
        self.on_total = on_total or (lambda line: print(line, flush=True))
        self.started = 0.0  # first delta: msg/s is the rate of reading, not of waiting for traffic
        self.last_total = 0.0
        self._ranges: dict = {}  # producer -> SeqRanges
        self._opaque: dict = {}  # other ids, oldest first (bounded)

    def add(self, delta_ms: float) -> None:
        # The hot path: one append and one modulo per message. Windows are the last `size` deltas;
        # every window size is a multiple of WINDOW_STEP, so their first and last messages fall
        # where count % WINDOW_STEP is 1 or 0, and only there is there work to do.
        deltas = self.recent
        deltas.append(delta_ms)
        n = self._dropped + len(deltas)
        if n % WINDOW_STEP <= 1:
            self._window_edge(n)

    @property
    def count(self) -> int:
        """Deltas measured so far."""
        return self._dropped + len(self.recent)

    def _window_edge(self, n: int) -> None:
        now = time.monotonic()
        if n == 1:
            self.started = now
        if n % WINDOW_STEP == 0:
            self._fold()
        for w in self.windows:
            if (n - 1) % w.size == 0:  # the window's first delta
                w.started = now
            if n % w.size == 0:
                self.on_window(w.summary(self.recent[-w.size:]))
        if len(self.recent) >= 2 * RECENT:  # (folded already: n is a multiple of RECENT here)
            del self.recent[:RECENT]
            self._dropped += RECENT
        # A running total every 1,000 messages, at most once a second.
        if n % 1000 == 0 and now - self.last_total >= 1.0:
            self.last_total = now
            self.on_total(self.total_line())

    def _fold(self) -> None:
        """Count the deltas not yet in the histogram into it."""
        chunk = self.recent[self._folded - self._dropped:]
        if not chunk:
            return
        hist, bucket, exact = self.hist, histogram.latency_bucket, histogram.EXACT_BELOW_MS
        for d in chunk:
            b = int(d + 0.5) if d < exact else bucket(d)
            hist[b] = hist.get(b, 0) + 1
        self._sum += sum(chunk)
        self._max = max(self._max, max(chunk))
        self._folded += len(chunk)

    def seen_before(self, message_id) -> bool:
        """Whether `message_id` came before (counted as a duplicate). A (producer, integer sequence)
        id is checked against every message of that producer; any other id against the newest
        MAX_OPAQUE_IDS such ids."""
        if message_id is None:
            return False
        if len(message_id) == 2 and type(message_id[1]) is int:
            ranges = self._ranges.get(message_id[0])
            if ranges is None:
                ranges = self._ranges[message_id[0]] = SeqRanges()
            if ranges.add(message_id[1]):
                return False
        else:
            opaque = self._opaque
            if message_id not in opaque:
                opaque[message_id] = None
                if len(opaque) > MAX_OPAQUE_IDS:
                    del opaque[next(iter(opaque))]
                return False
        self.duplicates += 1
        return True

    @property
    def id_ranges(self) -> int:
        """Sequence ranges held for duplicate detection (memory: grows with gaps, not with messages)."""
        return sum(len(r) for r in self._ranges.values())

    def total(self) -> dict:
        self._fold()
        n, h = self._folded, self.hist
        secs = max(time.monotonic() - self.started, 1e-9) if self.started else 1e-9
        return {"window": "TOTAL", "messages": n, "avg_ms": self._sum / n if n else 0.0,
                "p50_ms": histogram.nearest_rank(h, 0.5), "p95_ms": histogram.nearest_rank(h, 0.95),
                "p99_ms": histogram.nearest_rank(h, 0.99), "max_ms": self._max if n else 0.0,
                "msgs_per_s": n / secs, "negative": self.negative,
                "in_seconds": self.in_seconds, "invalid": self.invalid, "duplicates": self.duplicates,
                "timestamp_types": dict(self.timestamp_types)}

    def total_line(self) -> str:
        t = self.total()
        types = ", ".join(f"{k} {v}" for k, v in t["timestamp_types"].items()) or "none"
        return (f"[TOTAL] - {t['messages']} msgs read, avg {t['avg_ms']:.2f} ms, p50 {t['p50_ms']:g} "
                f"p95 {t['p95_ms']:g} p99 {t['p99_ms']:g} ms, {t['msgs_per_s']:.1f} msg/s; "
                f"errors: {t['negative']} negative, "
                f"{t['in_seconds']} in seconds, {t['invalid']} invalid; {t['duplicates']} duplicates; "
                f"timestamps: {types}")


class ArrivalWindows:
    """Exact latency histograms by the second the messages were read (plumbing.histogram buckets: 1 ms
    below 10 s, exact for Kafka's whole-millisecond deltas), so any span of whole seconds has its exact
    percentiles, and processes' histograms merge by adding counts (never averaging percentiles). A
    capacity step reads its window's (`histogram(start, end)`); the seconds older than KEEP_S go.
    A worker hands what it read since its last report to the master (`take`, `merge`)."""

    KEEP_S = 900

    def __init__(self) -> None:
        self.seconds: dict[int, dict[int, int]] = {}
        self._unreported: dict[int, dict[int, int]] = {}

    def add_many(self, deltas: list[float], now: float) -> None:
        """Deltas (ms) read at epoch second `now` (one clock reading per batch: the hot path)."""
        if not deltas:
            return
        second = int(now)
        merged = self.seconds.get(second)
        if merged is None:
            merged = self.seconds[second] = {}
            self._forget(second)
        fresh = self._unreported.setdefault(second, {})
        bucket, exact = histogram.latency_bucket, histogram.EXACT_BELOW_MS
        for d in deltas:
            b = int(d + 0.5) if d < exact else bucket(d)
            merged[b] = merged.get(b, 0) + 1
            fresh[b] = fresh.get(b, 0) + 1

    def _forget(self, now_second: int) -> None:
        old = [s for s in self.seconds if s < now_second - self.KEEP_S]
        for s in old:
            del self.seconds[s]
            self._unreported.pop(s, None)

    def take(self) -> dict[int, dict[int, int]]:
        """What was read since the last take (a worker's report to the master)."""
        out, self._unreported = self._unreported, {}
        return out

    def merge(self, report: dict) -> None:
        """Another process's `take()` (keys may arrive as strings after serialisation)."""
        for second, hist in report.items():
            second = int(second)
            mine = self.seconds.get(second)
            if mine is None:
                mine = self.seconds[second] = {}
                self._forget(second)
            for b, c in hist.items():
                mine[int(b)] = mine.get(int(b), 0) + c

    def histogram(self, start: float, end: float) -> dict[int, int]:
        """The merged histogram of the deltas read from epoch `start` to `end` (in whole seconds: those
        whose middle falls in the span, so either edge is off by at most half a second)."""
        first, last = math.ceil(start - 0.5), math.ceil(end - 0.5)
        out: dict[int, int] = {}
        for second, hist in self.seconds.items():
            if first <= second < last:
                for b, c in hist.items():
                    out[b] = out.get(b, 0) + c
        return out


TIMESTAMP_TYPES = {1: "CreateTime", 2: "LogAppendTime"}
# json.loads on bytes first sniffs their encoding; Kafka JSON is UTF-8, and decoding it ourselves
# then parsing the str costs ~1.3 µs instead of ~2 µs a message (same strictness).
_decode = json.JSONDecoder().decode


def handle_message(stats: LatencyStats, msg, id_fields=("_producer", "_seq")) -> float | None:
    """Account one output message; returns its latency in ms when it counts."""
    ts_type, ts = msg.timestamp()
    name = TIMESTAMP_TYPES.get(ts_type, "NotAvailable")
    stats.timestamp_types[name] = stats.timestamp_types.get(name, 0) + 1
    value = msg.value()
    try:
        event = _decode(value.decode() if value is not None else "")
        start = float(event["timestamp_start"])
    except (ValueError, TypeError, KeyError):
        stats.invalid += 1
        return None
    # A message without the producer's identity cannot be checked for duplicates (and raising
    # KeyError for each such message would cost more than the rest of this function).
    try:
        message_id = tuple([event[f] for f in id_fields]) if id_fields[0] in event else None
    except KeyError:
        message_id = None
    if stats.seen_before(message_id):
        return None
    if start < SECONDS_LIMIT:
        stats.in_seconds += 1
        if stats.in_seconds == 1:
            log.error("timestamp_start %s is in seconds, not milliseconds (offset %s): such messages are "
                      "counted as errors, not mixed into the latency", start, msg.offset())
        return None
    if ts_type not in TIMESTAMP_TYPES:
        stats.invalid += 1
        return None
    delta = ts - start
    if delta < 0:
        stats.negative += 1
        if stats.negative == 1:
            log.warning("negative latency %.0f ms at offset %s: clocks or timestamp types disagree", delta,
                        msg.offset())
        return None
    stats.add(delta)
    return delta


def consumer_config(client: dict, group: str) -> dict:
    """A latency consumer's settings on top of `client` (kafka_conf.client_config): the CLI's and
    the one inside a Locust run (generators/kafka_producer.LatencyReader)."""
    return {**kafka_conf.READER_DEFAULTS, **client, "group.id": group, "enable.auto.commit": False,
            "auto.offset.reset": "latest", "enable.partition.eof": False, "log_level": 3}


def make_on_assign(start: str):
    """Where each assigned partition starts: end (default), committed, beginning, or time:<epoch ms>."""
    from confluent_kafka import OFFSET_BEGINNING, OFFSET_END

    def on_assign(consumer, partitions) -> None:
        if start == "committed":
            committed = consumer.committed(partitions, timeout=10)
            for p, c in zip(partitions, committed, strict=True):
                p.offset = c.offset if c.offset >= 0 else OFFSET_END
        elif start == "beginning":
            for p in partitions:
                p.offset = OFFSET_BEGINNING
        elif start.startswith("time:"):
            for p in partitions:
                p.offset = int(start[5:])
            partitions = consumer.offsets_for_times(partitions, timeout=10)
        else:
            for p in partitions:
                p.offset = OFFSET_END
        consumer.assign(partitions)

    return on_assign


def check_start(start: str) -> str:
    if start in ("end", "committed", "beginning"):
        return start
    if start.startswith("time:") and start[5:].isdigit():
        return start
    raise ValueError(f"--start {start!r}: expected end, committed, beginning or time:<epoch ms>")


class WindowWriter:
    """Sends each window (and the total) to ClickHouse with the run id, batched by the sink."""

    def __init__(self, url: str | None, run_id: str, topic: str, spill_dir: str | None,
                 database: str = settings.MONITOR_DATABASE.default, connect_timeout: float = 3.0,
                 timeout: float = 10.0) -> None:
        self.sink = None
        self.run_id, self.topic = run_id, topic
        if url:
            from monitors.sink import Sink

            # Its own writer thread: a hung ClickHouse never holds up the reading (rows wait, then spill).
            self.sink = Sink(url, database, spill_dir, name=f"kafka-latency-{run_id}",
                             connect_timeout=connect_timeout, timeout=timeout).start()

    def add(self, s: dict) -> None:
        if self.sink:
            self.sink.add("load_test_kafka_latency", {"run_id": self.run_id, "timestamp": time.time(),
                                                      "topic": self.topic, "stat_window": s["window"], **s})

    def flush(self) -> None:
        if self.sink:
            self.sink.wake()

    def close(self) -> None:
        if self.sink:
            self.sink.close()


def group_members(admin, group: str) -> int:
    """Members of consumer group `group` now (0 while it does not exist or rebalances)."""
    from confluent_kafka import ConsumerGroupState, KafkaException

    try:
        desc = admin.describe_consumer_groups([group], request_timeout=5)[group].result()
    except KafkaException:
        return 0
    return len(desc.members) if desc.state == ConsumerGroupState.STABLE else 0


def wait_members(client: dict, group: str, members: int, timeout: float) -> int:
    """Exit code 0 once `group` is stable with at least `members` members, 1 after `timeout` s."""
    from confluent_kafka.admin import AdminClient

    admin = AdminClient({**client, "log_level": 0})
    deadline, seen = time.monotonic() + timeout, 0
    while time.monotonic() < deadline:
        seen = group_members(admin, group)
        if seen >= members:
            print(f"group {group}: {seen} members", flush=True)
            return 0
        time.sleep(1)  # a poll of the broker, not a synchronisation: the deadline decides
    print(f"error: group {group} has {seen} of {members} members after {timeout:g} s", file=sys.stderr)
    return 1


def parser():
    import configargparse

    p = configargparse.ArgumentParser(prog="python -m monitors.kafka_latency",
                                      description=__doc__, formatter_class=configargparse.RawDescriptionHelpFormatter)
    p.add_argument("--topic", required=True, env_var="KAFKA_LATENCY_TOPIC", help="the pipeline's output topic")
    p.add_argument("--brokers", default=None, env_var=settings.KAFKA_BROKERS.env,
                   help=f"bootstrap servers (default {settings.KAFKA_BROKERS.default})")
    p.add_argument("--group", default="kafka-latency", env_var="KAFKA_LATENCY_GROUP",
                   help="consumer group; instances in one group split the partitions (default %(default)s)")
    p.add_argument("--start", default="end", env_var="KAFKA_LATENCY_START",
                   help="end (default), committed, beginning or time:<epoch ms>")
    p.add_argument("--session-timeout-ms", type=int, default=45_000, env_var="KAFKA_LATENCY_SESSION_TIMEOUT_MS",
                   help="consumer group session timeout (default %(default)s, librdkafka's)")
    p.add_argument("--messages", type=int, default=0, env_var="KAFKA_LATENCY_MESSAGES",
                   help="stop after this many messages (default %(default)s: run until interrupted or idle)")
    p.add_argument("--idle-timeout", type=float, default=0, env_var="KAFKA_LATENCY_IDLE_TIMEOUT",
                   help="stop after this many seconds without a message (default %(default)s: never)")
    p.add_argument("--wait-members", type=int, default=0, env_var="KAFKA_LATENCY_WAIT_MEMBERS",
                   help="only wait until the group has this many members, then exit 0 (producers start after "
                        "their consumers: an init container); exit 1 after --idle-timeout s (default %(default)s: read)")
    p.add_argument("--clickhouse-url", default=None, env_var=settings.CLICKHOUSE_URL.env,
                   help="store the windows in <monitor-database>.load_test_kafka_latency (default: do not store)")
    p.add_argument("--monitor-database", default=settings.MONITOR_DATABASE.default, env_var=settings.MONITOR_DATABASE.env,
                   help="database of the run tables (default %(default)s)")
    p.add_argument("--run-id", default=None, env_var=settings.RUN_ID.env, help="run id stored with the windows")
    from monitors.sink import add_arguments

    add_arguments(p)  # --spill-dir and the timeouts
    return p


def main(argv: list[str] | None = None) -> int:
    from plumbing import chclient, logs

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    logs.setup()
    args = parser().parse_args(argv)
    try:
        if args.messages < 0:
            raise ValueError(f"--messages {args.messages}: expected a count >= 0 (0: no limit)")
        if args.idle_timeout < 0:
            raise ValueError(f"--idle-timeout {args.idle_timeout:g}: expected seconds >= 0 (0: never)")
        if args.wait_members < 0:
            raise ValueError(f"--wait-members {args.wait_members}: expected a count >= 0 (0: read the topic)")
        if args.clickhouse_url:
            chclient.parse_url(args.clickhouse_url)
            check_database_name(args.monitor_database)
        start = check_start(args.start)
        conf = consumer_config(kafka_conf.client_config(args.brokers), args.group)
        conf["session.timeout.ms"] = args.session_timeout_ms
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if args.wait_members:
        return wait_members(kafka_conf.client_config(args.brokers), args.group, args.wait_members, args.idle_timeout or 300)
    from confluent_kafka import Consumer, KafkaException

    from plumbing.runid import new_run_id

    run_id = args.run_id or new_run_id()
    writer = WindowWriter(args.clickhouse_url, run_id, args.topic, args.spill_dir, args.monitor_database,
                          args.clickhouse_connect_timeout, args.clickhouse_timeout)

    def on_window(s: dict) -> None:
        print(format_window(s), flush=True)
        writer.add(s)

    stats = LatencyStats(on_window)
    errors: list[str] = []
    conf["error_cb"] = lambda err: errors.append(str(err))
    conf["log_level"] = 0  # librdkafka would log every failed connection; errors are said once, below
    consumer = Consumer(conf)
    stop = {"now": False}
    signal.signal(signal.SIGTERM, lambda *_: stop.update(now=True))
    consumer.subscribe([args.topic], on_assign=make_on_assign(start))
    print(f"reading {args.topic} as group {args.group} from {start} (run {run_id})", flush=True)
    last_msg, last_commit, last_flush = time.monotonic(), time.monotonic(), time.monotonic()
    code = 0
    try:
        while not stop["now"]:
            batch = consumer.consume(num_messages=1000, timeout=0.5)
            now = time.monotonic()
            for msg in batch:
                if msg.error():
                    log.warning("consumer: %s", msg.error())
                    continue
                handle_message(stats, msg)
                last_msg = now
            if errors and stats.count == 0 and now - last_msg > min(10, args.idle_timeout or 10):
                # Nothing ever arrived and the client keeps failing: say why, once, and stop.
                print(f"error: cannot read {args.topic} from {conf['bootstrap.servers']}: {errors[-1]}",
                      file=sys.stderr)
                code = 1
                break
            if batch and now - last_commit > 1:
                consumer.commit(asynchronous=True)
                last_commit = now
            if now - last_flush > 1:
                writer.flush()
                last_flush = now
            if args.messages and stats.count + stats.negative + stats.in_seconds + stats.invalid + stats.duplicates >= args.messages:
                break
            if args.idle_timeout and now - last_msg > args.idle_timeout:
                print(f"no message for {args.idle_timeout:g} s; stopping", flush=True)
                break
    except KeyboardInterrupt:
        pass
    except KafkaException as exc:
        print(f"error: {exc}", file=sys.stderr)
        code = 1
    finally:
        try:
            consumer.commit(asynchronous=False)
        except KafkaException:
            pass  # nothing consumed yet
        consumer.close()
        total = stats.total()
        writer.add(total)
        writer.close()
        print(stats.total_line(), flush=True)
    return code


if __name__ == "__main__":
    sys.exit(main())
