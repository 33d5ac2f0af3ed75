"""The generator's wire formats decode with the libraries Open edX's consumers use."""

from __future__ import annotations

import base64
import json
import re

import pytest

import openedx_erb
from openedx_erb import wire
from openedx_erb.events import Clock, EventFactory, TrackedLearner, generated_users, load_users
from targets.pipeline import decode
from targets.pipeline.consumers import XAPI_LINE
from tests.helpers import log_of


def event(name_mix: str = "realistic") -> dict:
    return EventFactory("course-v1:OEX+abc123+2024-1", name_mix).next_event(TrackedLearner(7, "lt__000007"))


def test_redis_bus_event_data_decodes_with_openedx_events():
    e = event()
    fields = wire.redis_bus_fields(e)
    back = decode.tracking_event(fields["event_data"])  # openedx-events' AvroSignalDeserializer
    assert back["name"] == e["name"] and back["data"] == e["data"] and back["context"] == e["context"]
    assert back["timestamp"] == e["timestamp"]
    assert fields["type"] == b"org.openedx.analytics.tracking.event.emitted.v1" and fields["minorversion"] == b"0"


def test_our_avro_is_byte_identical_to_openedx_events_serializer():
    from datetime import datetime

    from openedx_events.analytics.data import TrackingLogData
    from openedx_events.analytics.signals import TRACKING_EVENT_EMITTED
    from openedx_events.event_bus.avro.serializer import AvroSignalSerializer, serialize_event_data_to_bytes

    e = event()
    data = {"tracking_log": TrackingLogData(name=e["name"], timestamp=datetime.fromisoformat(e["timestamp"]),
                                            data=json.dumps(e["data"], separators=(",", ":")),
                                            context=json.dumps(e["context"], separators=(",", ":")))}
    assert wire.tracking_log_avro(e) == serialize_event_data_to_bytes(data, TRACKING_EVENT_EMITTED)
    assert AvroSignalSerializer(TRACKING_EVENT_EMITTED).schema == wire.TRACKING_SCHEMA


@pytest.mark.parametrize("us", [1_796_031_347_000_000, 1_796_031_347_000_064], ids=["whole second", "fraction"])
def test_event_times_are_written_as_open_edx_writes_them(us):
    # eventtracking's log encoder and openedx-events' serializer both write datetime.isoformat(), which
    # drops a zero fraction; ERB hashes that string into the statement id, so after the bus the id is the same.
    from datetime import UTC, datetime

    from openedx_erb.events import iso

    e = {**event(), "timestamp": iso(us)}
    assert e["timestamp"] == datetime.fromtimestamp(us / 1_000_000, UTC).isoformat()
    back = decode.tracking_event(wire.redis_bus_fields(e)["event_data"])
    assert back["timestamp"] == e["timestamp"]
    assert [s["id"] for s in openedx_erb.statements(back)] == [s["id"] for s in openedx_erb.statements(e)]


def test_kafka_value_is_confluent_framed_avro():
    e = event()
    value = wire.confluent_wire(5, wire.tracking_log_avro(e))
    assert value[:5] == b"\x00\x00\x00\x00\x05"
    assert decode.tracking_event(decode.confluent_payload(value))["name"] == e["name"]
    headers = dict(wire.kafka_headers())
    assert headers["ce_type"] == b"org.openedx.analytics.tracking.event.emitted.v1" and headers["ce_specversion"] == b"1.0"


def test_celery_message_is_what_kombu_and_celery_read():
    from kombu.transport.virtual import Message  # noqa: F401 - the transport's message class exists

    msg = json.loads(wire.celery_message(["event_transformer", event()], "edx.lms.core.default"))
    args, kwargs, embed = json.loads(base64.b64decode(msg["body"]))
    assert msg["headers"]["task"] == "eventtracking.tasks.send_event" and args[0] == "event_transformer"
    assert kwargs == {} and embed["chain"] is None
    assert msg["properties"]["delivery_info"]["routing_key"] == "edx.lms.core.default"


def test_vector_xapi_line_matches_the_aspects_regex():
    st = openedx_erb.statements(event())[0]
    line = wire.xapi_line(st).rstrip("\n")
    m = XAPI_LINE.match(line)
    assert m and json.loads(m.group("tracking_message")) == st
    # The tracking line is not taken for an xAPI line.
    assert not XAPI_LINE.match(wire.tracking_line(event()).rstrip("\n"))
    assert re.match(r"^.* \[tracking\] [^{}]* (?P<m>\{.*\})$", wire.tracking_line(event()).rstrip("\n"))


def test_enrollment_mix_toggles_each_learner_starting_with_a_deactivation():
    f = EventFactory("course-v1:OEX+abc123+2024-1", "enrollment")
    learner = TrackedLearner(1, "lt__000001")
    names = [f.next_event(learner)["name"] for _ in range(4)]
    assert names == ["edx.course.enrollment.deactivated", "edx.course.enrollment.activated"] * 2


def test_event_times_are_unique_per_process_slot():
    a, b = Clock(slot=0), Clock(slot=1)
    times = [a.next_us() for _ in range(1000)] + [b.next_us() for _ in range(1000)]
    assert len(set(times)) == 2000 and all(t % 64 in (0, 1) for t in times)


def test_users_file_rows_and_errors(tmp_path):
    good = tmp_path / "users.csv"
    good.write_text("user_id,username\n3,edx\n4,staff\n")
    assert load_users(good) == [(3, "edx"), (4, "staff")]
    bad = tmp_path / "bad.csv"
    bad.write_text("3,edx\nx\n")
    import pytest

    with pytest.raises(ValueError, match="line 2: 'x': expected user_id,username"):
        load_users(bad)


def test_kafka_bus_messages_carry_the_schema_ids_the_registry_gave(kafka, tmp_path):
    import io
    import struct
    import uuid

    import fastavro
    from confluent_kafka import OFFSET_BEGINNING, Consumer, TopicPartition

    from tests.helpers import REPO, run_locust
    from tests.pipeline.schema_registry_fake import SchemaRegistry

    registry = SchemaRegistry()
    prefix = f"sr{uuid.uuid4().hex[:6]}"
    topic = f"{prefix}-analytics"
    try:
        done = run_locust(["-f", str(REPO / "locustfiles" / "tracking.py"), "--headless", "-u", "2", "-r", "2",
                           "-t", "60s", "--pipeline-backend", "kafka_bus", "--kafka-bus-brokers", kafka.url,
                           "--event-bus-prefix", prefix, "--schema-registry-url", registry.url, "--num-events", "20",
                           "--no-e2e", "--no-monitor", "--no-sar"],
                          env={"SCHEMA_REGISTRY_API_KEY": "k", "SCHEMA_REGISTRY_API_SECRET": "s"}, timeout=120)
        assert done.returncode == 0, log_of(done.stderr)
        value_id, key_id = registry.subjects[f"{topic}-value"], registry.subjects[f"{topic}-key"]
        assert value_id != key_id and all(a == "Basic " + base64.b64encode(b"k:s").decode() for a in registry.auth)
        consumer = Consumer({"bootstrap.servers": kafka.url, "group.id": prefix, "enable.auto.commit": False})
        consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in range(4)])
        messages = []
        while len(messages) < 20:
            batch = consumer.consume(20, 10)
            assert batch, f"only {len(messages)} of 20 messages on {topic}"
            messages += [m for m in batch if not m.error()]
        consumer.close()
        schema = fastavro.parse_schema(registry.schema(value_id))  # what a consumer fetches by id
        for m in messages:
            magic, framed_id = struct.unpack(">bI", m.value()[:5])
            assert (magic, framed_id) == (0, value_id) and struct.unpack(">bI", m.key()[:5]) == (0, key_id)
            record = fastavro.schemaless_reader(io.BytesIO(m.value()[5:]), schema)
            assert record["tracking_log"]["name"] and json.loads(record["tracking_log"]["context"])
    finally:
        registry.close()


def test_an_unreachable_schema_registry_is_a_one_line_error(kafka):
    from stack import free_port
    from tests.helpers import REPO, run_locust

    done = run_locust(["-f", str(REPO / "locustfiles" / "tracking.py"), "--headless", "-u", "1", "-t", "5s",
                       "--pipeline-backend", "kafka_bus", "--kafka-bus-brokers", kafka.url,
                       "--schema-registry-url", f"http://127.0.0.1:{free_port()}", "--no-e2e", "--no-monitor",
                       "--no-sar"], timeout=60)
    last = done.stderr.strip().splitlines()[-1]
    assert done.returncode != 0 and "Traceback" not in done.stderr
    assert last.startswith("error: kafka_bus: schema registry http://127.0.0.1:") and "unreachable" in last


def test_generated_learners_take_the_prefix_as_given():
    assert generated_users("lt_", 3) == [(1, "lt_000000"), (2, "lt_000001"), (3, "lt_000002")]  # not lt__000000
    assert generated_users("loadtest2_", 1) == [(1, "loadtest2_000000")]


class _SteppingClock:
    """Event times a fixed step apart (some on a whole second), the same for two factories."""

    def __init__(self) -> None:
        self.us = 1_796_031_347_000_000

    def next_us(self) -> int:
        self.us += 499_968 if self.us % 3 else 448
        return self.us


@pytest.mark.parametrize("mix", ["realistic", "enrollment"])
def test_the_bus_form_of_an_event_is_its_dict_encoded(mix):
    # The generator's bus senders take next_tracking_log (joined from parts encoded once); it must be
    # byte for byte what encoding next_event's dict gives, for every kind of event and learner.
    import random

    def draw(method: str) -> list:
        f = EventFactory("course-v1:OEX+abc123+2024-1", mix, _SteppingClock())
        learners = [TrackedLearner(i, f"lt__{i:06d}") for i in range(1, 40)]
        random.seed(11)
        return [getattr(f, method)(learners[i % len(learners)]) for i in range(3000)]

    dicts, logs = draw("next_event"), draw("next_tracking_log")
    assert len({e["name"] for e in dicts}) == (7 if mix == "realistic" else 2)
    assert [wire.tracking_log(e) for e in dicts] == logs
    assert [wire.tracking_log_avro(e) for e in dicts] == [wire.tracking_log_avro(t) for t in logs]
    back = decode.tracking_event(wire.redis_bus_fields(logs[0])["event_data"])
    assert back["data"] == dicts[0]["data"] and back["context"] == dicts[0]["context"]


def test_event_ids_are_version_1_uuids_of_this_process_in_time_order():
    import uuid

    ids = [uuid.UUID(h.decode()) for h in (dict(wire.kafka_headers())["ce_id"] for _ in range(5000))]
    assert len(set(ids)) == 5000
    assert all(u.version == 1 and u.variant == uuid.RFC_4122 for u in ids)
    assert len({(u.node, u.clock_seq) for u in ids}) == 1  # one node and clock sequence per process
    assert all(a.time < b.time for a, b in zip(ids, ids[1:], strict=False))


def test_event_times_are_formatted_as_datetime_isoformat():
    import random
    from datetime import UTC, datetime

    from openedx_erb.events import iso

    rng = random.Random(3)
    stamps = [rng.randrange(1_700_000_000_000_000, 1_900_000_000_000_000) for _ in range(20_000)]
    stamps += [s - s % 1_000_000 for s in stamps[:2000]] + [s - s % 1000 for s in stamps[:2000]]
    assert [iso(us) for us in stamps] == [datetime.fromtimestamp(us / 1_000_000, UTC).isoformat() for us in stamps]



# Locust monkey-patches on import, so the sender runs in a subprocess: it sends one event twice, then
# the next, and prints them and the successes its delivery reports counted.
SEND_THREE = r"""
import json, sys
import gevent
from locust import events
from locust.env import Environment
from backends.kafka_bus import KafkaSender
from openedx_erb.events import EventFactory, TrackedLearner
from plumbing import kafka_conf

env = Environment(events=events)
sender = KafkaSender(env, "kafka_bus", conf=kafka_conf.client_config(sys.argv[1]), topic=sys.argv[2],
                     value_schema_id=5, key_schema_id=6)
factory, learner = EventFactory("course-v1:OEX+abc123+2024-1", "realistic"), TrackedLearner(7, "lt__000007")
first, second = factory.next_tracking_log(learner), factory.next_tracking_log(learner)
sent = [first, first, second]
for e in sent:
    sender.send(e)
sender.close()
print(json.dumps({"sent": sent, "counted": env.stats.total.num_requests, "failed": env.stats.total.num_failures}))
"""


def test_kafka_bus_consecutive_messages_differ_only_in_their_per_event_fields(kafka):
    # The sender builds the constant headers and framing once: two messages of the same event differ
    # only in ce_id and ce_time, and each value is that event's own encoding (openedx-events decodes it).
    import subprocess
    import sys
    import uuid
    from datetime import datetime

    from confluent_kafka import OFFSET_BEGINNING, Consumer, TopicPartition

    from tests.helpers import REPO

    topic = f"wire{uuid.uuid4().hex[:6]}-analytics"
    done = subprocess.run([sys.executable, "-c", SEND_THREE, kafka.url, topic], cwd=REPO, capture_output=True,
                          text=True, timeout=60)
    assert done.returncode == 0, log_of(done.stderr)
    out = json.loads(done.stdout.strip().splitlines()[-1])
    sent = [wire.TrackingLog(*e) for e in out["sent"]]
    assert (out["counted"], out["failed"]) == (3, 0)  # each delivery report counted once
    consumer = Consumer({"bootstrap.servers": kafka.url, "group.id": topic, "enable.auto.commit": False})
    consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in range(4)])
    messages = []
    while len(messages) < 3:
        batch = consumer.consume(3, 10)
        assert batch, f"only {len(messages)} of 3 messages on {topic}"
        messages += [m for m in batch if not m.error()]
    consumer.close()
    openedx_erb.setup()  # openedx-events' deserializer reads Django's settings
    # One key, so one partition: the messages in the order sent.
    for m, e in zip(messages, sent, strict=True):
        assert m.value() == wire.confluent_wire(5, wire.tracking_log_avro(e))
        assert m.key() == wire.confluent_wire(6, wire.avro_string(e.username))
        back = decode.tracking_event(decode.confluent_payload(m.value()))
        assert (back["name"], back["timestamp"]) == (e.name, e.timestamp)
    headers = [m.headers() for m in messages]
    names = ["ce_type", "ce_id", "ce_source", "ce_time", "ce_minorversion", "sourcehost", "sourcelib",
             "ce_specversion", "content-type"]
    assert all([k for k, _ in h] == names for h in headers)
    meta = wire.metadata("openedx/lms/web")
    for h in headers:
        d = dict(h)
        assert d["ce_type"] == meta["type"].encode() and d["ce_source"] == meta["source"].encode()
        assert (d["ce_minorversion"], d["ce_specversion"], d["content-type"]) == (b"0", b"1.0", b"application/avro")
        assert (d["sourcehost"], d["sourcelib"]) == (meta["sourcehost"].encode(), meta["sourcelib"].encode())
        assert uuid.UUID(d["ce_id"].decode()).version == 1
        stamp = d["ce_time"].decode()  # EventsMetadata's time.isoformat(), in UTC
        assert datetime.fromisoformat(stamp).isoformat() == stamp and stamp.endswith("+00:00")
    a, b, c = (dict(h) for h in headers)
    assert {k for k in a if a[k] != b[k]} <= {"ce_id", "ce_time"} and a["ce_id"] != b["ce_id"] != c["ce_id"]
    assert {k for k in a if a[k] != c[k]} <= {"ce_id", "ce_time"}
