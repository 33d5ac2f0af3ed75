"""Where the tracking generator's CPU per event goes, stage by stage, in one process (no scheduler):
`python -m bench._generator_cost BACKEND REDIS_URL KAFKA_BROKERS TMPDIR` prints one JSON line of CPU µs
per event: build (openedx_erb.events: the event dict, or for a sender that takes the bus's form,
redis_bus and kafka_bus, `next_tracking_log` with its data and context JSON), erb (event-routing-backends'
statements, vector only), encode (the rest of the wire format), stats (Locust's request event and
statistics; for the senders that report in batches, a RequestBatch's add and flush), transport (the
sender's own work: queueing, the write, the replies, minus encode and stats), total (a whole send). bench/arrival.py runs it.
"""

from __future__ import annotations

import json
import sys
import time
import uuid
from types import SimpleNamespace

import gevent
from locust import events  # noqa: I001 - Locust first: it patches the standard library for gevent
from locust.env import Environment

import backends
from backends.base import REQUEST_TYPE, resp_command
from openedx_erb import wire
from openedx_erb.events import EventFactory, TrackedLearner
from plumbing.bulk_stats import RequestBatch

N = 20_000


def cpu_us(fn, n: int) -> float:
    t = time.process_time()
    fn()
    return (time.process_time() - t) * 1e6 / n


def main(backend: str, redis_url: str, brokers: str, tmp: str) -> dict:
    env = Environment(events=events)
    env.create_local_runner()  # its request listener keeps the statistics, as in a run
    prefix = f"cost{uuid.uuid4().hex[:6]}"
    o = SimpleNamespace(event_bus_stream=None, event_bus_prefix=prefix, redis_stream_maxlen=0,
                        event_bus_redis_url=redis_url, celery_queue=f"{prefix}.q", celery_broker_url=redis_url,
                        kafka_bus_brokers=brokers, kafka_bus_topic=None, kafka_key="user", kafka_value_schema_id=1,
                        kafka_key_schema_id=2, delivery_timeout=30.0, vector_log_file=f"{tmp}/{prefix}.log",
                        vector_lines="xapi")
    n = N if backend != "vector" else N // 10
    factory = EventFactory("course-v1:OEX+bench+2024-1", "realistic")
    learners = [TrackedLearner(i, f"lt__{i:06d}") for i in range(100)]
    evs: list = []
    bus_form = backends.get(backend).sender(env, o)
    make = factory.next_tracking_log if bus_form.takes_tracking_log else factory.next_event
    bus_form.close()
    out = {"build": cpu_us(lambda: evs.extend(make(learners[i % 100]) for i in range(n)), n)}
    if backend == "vector":
        import openedx_erb

        openedx_erb.setup()
        for e in evs[:200]:
            openedx_erb.statements(e)  # warm ERB's caches
        statements = []
        out["erb"] = cpu_us(lambda: statements.extend(openedx_erb.statements(e) for e in evs), n)
        out["encode"] = cpu_us(lambda: [("".join(wire.xapi_line(s) for s in ss)).encode() for ss in statements], n)
    elif backend == "kafka_bus":
        out["encode"] = cpu_us(lambda: [(wire.confluent_wire(1, wire.tracking_log_avro(e)),
                                         wire.confluent_wire(2, wire.avro_string(e.username)),
                                         wire.kafka_headers()) for e in evs], n)
    else:
        sender = backends.get(backend).sender(env, o)
        out["encode"] = cpu_us(lambda: [resp_command(sender.command(e)[0]) for e in evs], n)
        sender.close()
    fire = env.events.request.fire
    names = [e.name if isinstance(e, wire.TrackingLog) else e["name"] for e in evs]
    if bus_form._stats is not None:  # reported in batches, flushed once per turn of the sender's loop
        batch = RequestBatch(env, REQUEST_TYPE)

        def batched() -> None:
            for i, name in enumerate(names):
                batch.add((name, 1.0, 500, 2.0))
                if i % 200 == 199:
                    batch.flush()
            batch.flush()

        out["stats"] = cpu_us(batched, n)
    else:
        out["stats"] = cpu_us(lambda: [fire(request_type=REQUEST_TYPE, name=name, response_time=1.0,
                                            response_length=500, exception=None, context={}, start_time=0.0)
                                       for name in names], n)
    sender = backends.get(backend).sender(env, o)

    def send_all() -> None:
        for i, e in enumerate(evs):
            sender.send(e)
            if i % 1000 == 999:
                sender.wait_for_room()
        while sender.outstanding():
            gevent.sleep(0.001)

    out["total"] = cpu_us(send_all, n)
    sender.close()
    out["transport"] = out["total"] - out["encode"] - out["stats"] - out.get("erb", 0.0)
    return {k: round(v, 1) for k, v in out.items()}


if __name__ == "__main__":
    print(json.dumps(main(*sys.argv[1:5])))
