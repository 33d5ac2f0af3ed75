"""The kafka_bus sampler's lag against the exact lag, on the local Kafka (Tansu), at a steady rate.

    python -m bench.kafka_lag [RATE CONSUMER_RATE SECONDS ...]    (default 400 400 40  400 300 40  800 600 40)

Tansu answers ListOffsets with the base offset of a partition's last produce batch + 1, not its end,
so the sampler's lag (high watermark − committed, the standard Kafka reading) is short by the last
batch's size − 1 per partition. This measures what that does to the lag series the capacity search
judges: a producer with the generator's settings (linger.ms 5, acks all, keyed by 100 users over
the 4 partitions of an auto-created topic) sends RATE/s; a group member reads CONSUMER_RATE/s and
commits after each read, as targets.pipeline does. Every 0.5 s the sampler's lag is taken beside
the exact lag (the end offsets from the producer's delivery reports − the committed offsets). The
error's spread and its slope (events/s; the search's tolerance is 5 % of the rate) are printed.
"""

from __future__ import annotations

import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

from backends.kafka_bus import Sampler
from plumbing import kafka_conf
from stack import Stack

TOPIC, GROUP, WARM_UP_S = "dev-analytics", "event_routing_backends", 5.0


def slope(ts: list[float], ys: list[float]) -> float:
    mt, my = statistics.fmean(ts), statistics.fmean(ys)
    return sum((t - mt) * (y - my) for t, y in zip(ts, ys, strict=True)) / sum((t - mt) ** 2 for t in ts)


def measure(brokers: str, rate: float, consumer_rate: float, seconds: float) -> str:
    from confluent_kafka import Consumer, Producer

    topic = f"{TOPIC}-{int(rate)}-{int(consumer_rate)}"
    end: dict[int, int] = {}
    stop = threading.Event()

    def delivered(err, msg) -> None:
        if err is None:
            end[msg.partition()] = max(end.get(msg.partition(), 0), msg.offset() + 1)

    producer = Producer({"bootstrap.servers": brokers, "linger.ms": 5, "acks": "all"})  # the generator's
    producer.produce(topic, b"first", key=b"user0", on_delivery=delivered)  # auto-creates the topic
    producer.flush(30)

    def produce() -> None:
        t0, n = time.monotonic(), 0
        while not stop.is_set():
            wait = t0 + n / rate - time.monotonic()
            if wait > 0:
                time.sleep(min(wait, 0.01))
                continue
            producer.produce(topic, b"x" * 600, key=f"user{n % 100}".encode(), on_delivery=delivered)
            producer.poll(0)
            n += 1
        producer.flush(30)

    def consume() -> None:
        c = Consumer({**kafka_conf.READER_DEFAULTS, "bootstrap.servers": brokers, "group.id": GROUP,
                      "enable.auto.commit": False, "auto.offset.reset": "earliest", "session.timeout.ms": 6000})
        c.subscribe([topic])
        t0, n = time.monotonic(), 0
        while not stop.is_set():
            msgs = c.consume(num_messages=max(1, int(consumer_rate * 0.2)), timeout=0.2)
            if msgs:
                n += len(msgs)
                c.commit(asynchronous=False)
                wait = t0 + n / consumer_rate - time.monotonic()
                if wait > 0:
                    time.sleep(wait)
        c.close()

    threads = [threading.Thread(target=f, daemon=True) for f in (produce, consume)]
    for t in threads:
        t.start()
    sampler = Sampler(brokers, topic, GROUP)
    rows = []
    t0 = time.monotonic()
    try:
        while time.monotonic() - t0 < seconds:
            time.sleep(0.5)
            s = sampler.sample()
            exact = sum(end.get(p["partition"], 0) - max(p["committed"], 0) for p in s["partitions"])
            rows.append((time.monotonic() - t0, s["lag"], exact))
    finally:
        stop.set()
        for t in threads:
            t.join(timeout=35)
        sampler.close()
    rows = [r for r in rows if r[0] >= WARM_UP_S]  # the group's join
    ts = [t for t, _, _ in rows]
    err = [exact - lag for _, lag, exact in rows]
    return (f"{rate:g}/s offered, {consumer_rate:g}/s read: exact lag {rows[0][2]} → {rows[-1][2]} "
            f"({slope(ts, [e for *_, e in rows]):+.1f}/s), sampler's lag slope {slope(ts, [s for _, s, _ in rows]):+.1f}/s; "
            f"error (exact − sampled) over {len(rows)} samples: mean {statistics.fmean(err):.1f}, "
            f"min {min(err)}, max {max(err)}, slope {slope(ts, err):+.2f}/s (tolerance {0.05 * rate:g}/s)")


def main(argv: list[str] | None = None) -> int:
    args = [float(x) for x in argv or []] or [400, 400, 40, 400, 300, 40, 800, 600, 40]
    if len(args) % 3:
        print("error: expected RATE CONSUMER_RATE SECONDS triples", file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory(prefix="bench-kafka-lag-") as tmp:
        stack = Stack(Path(tmp) / "stack", free_ports=True)
        try:
            brokers = stack.start("kafka")["kafka"].url
            for i in range(0, len(args), 3):
                print(measure(brokers, *args[i:i + 3]), flush=True)
        finally:
            stack.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
