"""`python -m targets.streams.topics TOPIC [TOPIC …] [--partitions 4]`: create topics unless they exist."""

from __future__ import annotations

import argparse
import sys

from plumbing import kafka_conf


def ensure(conf: dict, topics: list[str], partitions: int) -> list[str]:
    """Create those of `topics` that do not exist, with `partitions` each; returns the ones created.
    Raises what librdkafka raises (brokers unreachable, creation refused)."""
    from confluent_kafka.admin import AdminClient, NewTopic

    admin = AdminClient({**conf, "log_level": 0})
    existing = admin.list_topics(timeout=10).topics
    new = [NewTopic(t, partitions) for t in topics if t not in existing]
    created = []
    for topic, future in (admin.create_topics(new).items() if new else []):
        try:
            future.result(30)
        except Exception as exc:
            if "TOPIC_ALREADY_EXISTS" not in str(exc):  # created meanwhile by another client
                raise
            continue
        created.append(topic)
    return created


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m targets.streams.topics", description=__doc__)
    p.add_argument("topics", nargs="+")
    p.add_argument("--partitions", type=int, default=4)
    p.add_argument("--brokers", default=None, help="default: KAFKA_BROKERS or 127.0.0.1:9092")
    args = p.parse_args(argv)
    try:
        conf = kafka_conf.client_config(args.brokers)
        created = ensure(conf, args.topics, args.partitions)
    except Exception as exc:  # noqa: BLE001 - one line, whatever librdkafka says
        print(f"error: cannot reach Kafka: {exc}", file=sys.stderr)
        return 1
    for topic in created:
        print(f"created {topic} ({args.partitions} partitions)")
    return 0

if __name__ == "__main__":
    sys.exit(main())
