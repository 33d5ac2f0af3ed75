"""`python -m targets.streams.topics TOPIC [TOPIC …] [--partitions 4]`: create topics unless they exist."""

from __future__ import annotations

import argparse
import sys

from plumbing import kafka_conf


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m targets.streams.topics", description=__doc__)
    p.add_argument("topics", nargs="+")
    p.add_argument("--partitions", type=int, default=4)
    p.add_argument("--brokers", default=None, help="default: KAFKA_BROKERS or 127.0.0.1:9092")
    args = p.parse_args(argv)
    from confluent_kafka.admin import AdminClient, NewTopic

    try:
        admin = AdminClient({**kafka_conf.client_config(args.brokers), "log_level": 0})
        existing = admin.list_topics(timeout=10).topics
    except Exception as exc:  # noqa: BLE001 - one line, whatever librdkafka says
        print(f"error: cannot reach Kafka: {exc}", file=sys.stderr)
        return 1
    new = [NewTopic(t, args.partitions) for t in args.topics if t not in existing]
    for topic, future in (admin.create_topics(new).items() if new else []):
        future.result(30)
        print(f"created {topic} ({args.partitions} partitions)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
