"""Reference stream processor: `python -m targets.streams.processor --input-topic IN --output-topic OUT`.

Consumes the input topic and produces each message to the output topic with `timestamp_start`
set to the input message's Kafka timestamp in milliseconds, as the seed's streams operator does,
so the latency consumer can measure the pipeline. `--delay-ms D` holds each message until D ms
after its input timestamp (a known, injectable processing time); `--transform upper` upper-cases
string fields. Instances in one consumer group split the partitions. Offsets are committed after
the output is delivered (at least once). Connection settings: KAFKA_BROKERS, KAFKA_APIKEY, KAFKA_CERT.
"""

from __future__ import annotations

import heapq
import json
import logging
import signal
import sys
import time
from pathlib import Path

import configargparse

from plumbing import kafka_conf

log = logging.getLogger("streams")


def transform(event: dict, how: str) -> dict:
    if how == "upper":
        return {k: v.upper() if isinstance(v, str) else v for k, v in event.items()}
    return event


def parser() -> configargparse.ArgumentParser:
    p = configargparse.ArgumentParser(prog="python -m targets.streams.processor", description=__doc__,
                                      formatter_class=configargparse.RawDescriptionHelpFormatter)
    p.add_argument("--input-topic", required=True, env_var="STREAMS_INPUT_TOPIC")
    p.add_argument("--output-topic", required=True, env_var="STREAMS_OUTPUT_TOPIC")
    p.add_argument("--brokers", default=None, env_var="KAFKA_BROKERS")
    p.add_argument("--group", default="streams-processor", env_var="STREAMS_GROUP")
    p.add_argument("--delay-ms", type=float, default=0.0, env_var="STREAMS_DELAY_MS",
                   help="emit each message this many ms after its input timestamp (default 0)")
    p.add_argument("--transform", choices=["none", "upper"], default="none", env_var="STREAMS_TRANSFORM")
    p.add_argument("--start", choices=["earliest", "latest"], default="earliest", env_var="STREAMS_START",
                   help="where a new group starts reading (default earliest)")
    p.add_argument("--fetch-wait-ms", type=int, default=10, env_var="STREAMS_FETCH_WAIT_MS",
                   help="longest a fetch waits at the broker for data (default 10)")
    p.add_argument("--ready-file", default=None, env_var="STREAMS_READY_FILE",
                   help="touch this file once partitions are assigned (for scripts that wait for readiness)")
    p.add_argument("--session-timeout-ms", type=int, default=10_000, env_var="STREAMS_SESSION_TIMEOUT_MS")
    return p


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    args = parser().parse_args(argv)
    if args.delay_ms < 0:
        print(f"error: --delay-ms {args.delay_ms}: expected milliseconds >= 0", file=sys.stderr)
        return 2
    try:
        base = kafka_conf.client_config(args.brokers)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    from confluent_kafka import Consumer, KafkaException, Producer

    consumer = Consumer({**kafka_conf.READER_DEFAULTS, **base, "group.id": args.group, "enable.auto.commit": False,
                         "auto.offset.reset": args.start, "session.timeout.ms": args.session_timeout_ms,
                         # A stream processor answers in ms: do not let a fetch idle at the broker.
                         "fetch.wait.max.ms": args.fetch_wait_ms, "log_level": 3})
    producer = Producer({**base, "linger.ms": 0, "log_level": 3})
    stop = {"now": False}
    signal.signal(signal.SIGTERM, lambda *_: stop.update(now=True))
    def on_assign(c, partitions) -> None:
        if args.ready_file:
            Path(args.ready_file).touch()
        log.info("assigned %d partitions", len(partitions))

    consumer.subscribe([args.input_topic], on_assign=on_assign)
    log.info("processing %s -> %s as group %s (delay %g ms, transform %s)", args.input_topic, args.output_topic,
             args.group, args.delay_ms, args.transform)
    processed, last_commit = 0, time.monotonic()
    # Messages wait in a heap ordered by their due time (input timestamp + delay), so a batch that
    # mixes partitions never holds an early message behind a later one.
    due: list[tuple[float, int, dict, bytes | None]] = []
    seq = 0
    try:
        while not stop["now"]:
            wait = 0.05 if not due else min(0.05, max(0.0, due[0][0] - time.time()))
            batch = consumer.consume(num_messages=500, timeout=wait)
            for msg in batch:
                if msg.error():
                    log.warning("consumer: %s", msg.error())
                    continue
                _, ts = msg.timestamp()
                try:
                    event = json.loads(msg.value())
                    if not isinstance(event, dict):
                        event = {"value": event}
                except (ValueError, TypeError):
                    event = {"value": (msg.value() or b"").decode(errors="replace")}
                event = transform(event, args.transform)
                event["timestamp_start"] = ts
                seq += 1
                heapq.heappush(due, ((ts + args.delay_ms) / 1000.0, seq, event, msg.key()))
            while due and due[0][0] <= time.time():
                _, _, event, key = heapq.heappop(due)
                while True:
                    try:
                        producer.produce(args.output_topic, json.dumps(event, separators=(",", ":")).encode(),
                                         key=key)
                        break
                    except BufferError:
                        producer.poll(0.05)
                processed += 1
            producer.poll(0)
            if not due and time.monotonic() - last_commit > 0.5:
                # Everything consumed so far is delivered before its offsets are committed: at least once.
                producer.flush(10)
                consumer.commit(asynchronous=True)
                last_commit = time.monotonic()
    except KafkaException as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    finally:
        for _, _, event, key in sorted(due):  # stopping: emit what is held rather than drop it
            producer.produce(args.output_topic, json.dumps(event, separators=(",", ":")).encode(), key=key)
        producer.flush(10)
        try:
            consumer.commit(asynchronous=False)
        except KafkaException:
            pass
        consumer.close()
        log.info("processed %d messages", processed)
    return 0


if __name__ == "__main__":
    sys.exit(main())
