"""A stream processor whose capacity is exactly known: it moves at most --rate messages/s from the
input topic to the output topic, each as JSON with `timestamp_start` (the input's CreateTime), as the
reference processor (targets.streams.processor) writes them.

    python -m tests.capacity.paced_processor --brokers … --input-topic a --output-topic b --rate 80 --ready-file …
"""

from __future__ import annotations

import argparse
import json
import signal
from pathlib import Path

from plumbing import kafka_conf
from tests.capacity.standin import TICK, Pace


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m tests.capacity.paced_processor", description=__doc__)
    for name in ("--brokers", "--input-topic", "--output-topic", "--group"):
        p.add_argument(name, required=name != "--group", default="paced-processor")
    p.add_argument("--rate", type=float, required=True)
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
    while not stop["now"]:
        batch = [m for m in consumer.consume(num_messages=slice_n, timeout=0.1) if not m.error()]
        if not batch:
            continue
        pace.take(len(batch))
        for m in batch:
            event = json.loads(m.value())
            event["timestamp_start"] = m.timestamp()[1]
            producer.produce(a.output_topic, json.dumps(event, separators=(",", ":")).encode(), key=m.key())
        producer.poll(0)
    producer.flush(10)
    consumer.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
