"""A stream processor whose capacity is exactly known: it moves at most --rate messages/s from the
input topic to the output topic, each as JSON with `timestamp_start` (the input's CreateTime), as the
reference processor (targets.streams.processor) writes them. With --latency-ms D its latency is exactly
known too: each message waits until D ms after its input timestamp, then leaves (at most --rate a
second) timestamped exactly then; one the pace holds back (it fell behind) is stamped as late as it is.

    python -m tests.capacity.paced_processor --brokers … --input-topic a --output-topic b --rate 80 --ready-file …
"""

from __future__ import annotations

import argparse
import heapq
import itertools
import json
import signal
import time
from pathlib import Path

from plumbing import kafka_conf
from tests.capacity.standin import TICK, Pace


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m tests.capacity.paced_processor", description=__doc__)
    for name in ("--brokers", "--input-topic", "--output-topic", "--group"):
        p.add_argument(name, required=name != "--group", default="paced-processor")
    p.add_argument("--rate", type=float, required=True)
    p.add_argument("--latency-ms", type=int, default=0)
    p.add_argument("--ready-file", type=Path, required=True)
    a = p.parse_args(argv)
    from confluent_kafka import Consumer, Producer

    base = kafka_conf.client_config(a.brokers)
    consumer = Consumer({**kafka_conf.READER_DEFAULTS, **base, "group.id": a.group, "enable.auto.commit": True,
                         "auto.offset.reset": "latest", "session.timeout.ms": 6000, "fetch.wait.max.ms": 10,
                         "log_level": 3})
    producer = Producer({**base, "linger.ms": 0, "log_level": 3})
    stop = {"now": False}
    signal.signal(signal.SIGTERM, lambda *_: stop.update(now=True))
    consumer.subscribe([a.input_topic], on_assign=lambda c, parts: a.ready_file.touch())
    pace, slice_n = Pace(a.rate), max(1, round(a.rate * TICK))
    # Messages wait here until they are due (input timestamp + --latency-ms); they leave paced, at most
    # --rate a second. One that leaves without waiting for the pace is stamped exactly when it was due.
    held: list = []  # (due ms, n, value, key)
    order = itertools.count()
    while not stop["now"]:
        now_ms = time.time() * 1000
        due = [heapq.heappop(held) for _ in range(slice_n) if held and held[0][0] <= now_ms]
        if due:
            before = time.monotonic()
            pace.take(len(due))
            late = time.monotonic() - before > 0.001  # the pace held it back: it leaves as late as it is
            for when, _n, value, key in due:
                stamp = (int(time.time() * 1000) if late else when) if a.latency_ms else 0
                producer.produce(a.output_topic, value, key=key, timestamp=stamp)
            producer.poll(0)
            continue
        wait = min(0.1, max((held[0][0] - now_ms) / 1000, 0.001)) if held else 0.1
        for m in consumer.consume(num_messages=1000, timeout=wait):
            if m.error():
                continue
            event = json.loads(m.value())
            event["timestamp_start"] = start = m.timestamp()[1]
            value = json.dumps(event, separators=(",", ":")).encode()
            heapq.heappush(held, (start + a.latency_ms, next(order), value, m.key()))
        producer.poll(0)
    producer.flush(10)
    consumer.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
