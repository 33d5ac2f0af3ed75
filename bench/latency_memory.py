"""Kafka latency consumer's memory over a long run: RSS after 1M and 10M output messages.

Feeds monitors.kafka_latency.handle_message (the accounting every message goes through: decode,
duplicate check, delta, windows, TOTAL) with output messages as the reference stream processor
writes them — 8 producers with their own sequences, read from 4 partitions in batches of 1,000, so
each producer's sequence arrives interleaved — and with 0.1 % redelivered (duplicates). The broker is
left out on purpose: what grows with the run is this accounting. Goal: RSS flat after warm-up
(the deltas kept at their most, by 300K), below 100 MB at 10M messages. The former LatencyStats kept every delta, a
sorted copy and a set of ids: ~175 MB per million messages.

`BENCH_LATENCY_MESSAGES` (default 10,000,000) sets the run's length.
"""

from __future__ import annotations

import os
import time

import psutil

from monitors.kafka_latency import LatencyStats, handle_message

N = int(os.environ.get("BENCH_LATENCY_MESSAGES", "10000000"))
PRODUCERS, PARTITIONS, BATCH = 8, 4, 1000
MARKS = (300_000, 1_000_000, 10_000_000)  # 300K: warm-up over (the kept deltas at their most)


class Msg:
    """What confluent-kafka's Message offers handle_message: timestamp(), value(), offset()."""

    __slots__ = ("_ts", "_value", "_offset")

    def __init__(self, ts: int, value: bytes, offset: int) -> None:
        self._ts, self._value, self._offset = ts, value, offset

    def timestamp(self) -> tuple[int, int]:
        return 1, self._ts  # CreateTime, as Tansu gives

    def value(self) -> bytes:
        return self._value

    def offset(self) -> int:
        return self._offset


def messages(n: int):
    """n output messages in the order a consumer reads 4 partitions in batches (plus redeliveries)."""
    t0 = int(time.time() * 1000) - 3_600_000
    per_partition = [0] * PARTITIONS  # next global index on each partition
    sent = 0
    partition = 0
    while sent < n:
        # A batch from one partition: message i goes to partition i % PARTITIONS.
        for _ in range(BATCH):
            i = per_partition[partition] * PARTITIONS + partition
            per_partition[partition] += 1
            producer, seq = i % PRODUCERS, i // PRODUCERS
            start = t0 + i // 100
            delta = 5 + (i * 7919) % 400 + (15_000 if i % 1000 == 0 else 0)  # a tail above 10 s
            value = b'{"timestamp_start":%d,"_producer":"p%d","_seq":%d}' % (start, producer, seq)
            yield Msg(start + delta, value, i)
            if i % 1000 == 7:
                yield Msg(start + delta, value, i)  # redelivered: a duplicate
            sent += 1
            if sent >= n:
                return
        partition = (partition + 1) % PARTITIONS


def main() -> int:
    proc = psutil.Process()
    stats = LatencyStats(on_window=lambda _s: None, on_total=lambda _line: None)
    marks = [m for m in MARKS if m <= N] or [N]
    print(f"{'messages':>12} {'RSS MB':>8} {'s':>6}   (goal: flat after the warm-up, < 100 MB)")
    rss0 = proc.memory_info().rss / 2**20
    print(f"{0:>12,} {rss0:>8.1f} {0:>6.0f}")
    t0 = time.monotonic()
    seen = 0
    figures = {}
    for msg in messages(N):
        handle_message(stats, msg)
        seen += 1
        if seen in marks:
            stats.total()
            figures[seen] = proc.memory_info().rss / 2**20
            print(f"{seen:>12,} {figures[seen]:>8.1f} {time.monotonic() - t0:>6.0f}", flush=True)
    t = stats.total()
    print(f"TOTAL {t['messages']:,} msgs, p50 {t['p50_ms']:g} p95 {t['p95_ms']:g} p99 {t['p99_ms']:g} "
          f"max {t['max_ms']:g} ms; {t['duplicates']:,} duplicates; histogram buckets {len(stats.hist):,}, "
          f"sequence ranges {stats.id_ranges}")
    first, last = figures[marks[0]], figures[marks[-1]]
    print(f"RSS growth after warm-up: {last - first:+.1f} MB ({first:.1f} → {last:.1f} MB); "
          f"{'within' if last < 100 else 'ABOVE'} the 100 MB goal")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
