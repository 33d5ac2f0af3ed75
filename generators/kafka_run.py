"""The Kafka producers' run (its entry point is locustfiles/kafka.py): producers for a stream
pipeline, with optional end-to-end latency from its output topic.

Each user produces records cycled from --kafka-data-file (a JSON array), keyed by
--kafka-key-field; each delivery is a PRODUCE request timed from produce() to the broker's
delivery report. With --kafka-messages N the run stops once N messages (split over processes,
each counted once) are delivered. With --kafka-latency-topic, every output message's latency
(output timestamp − timestamp_start, ms) goes into an E2E row named for that topic, outside
Aggregated (monitors.e2e), so percentiles aggregate across workers and Aggregated stays PRODUCE.
Connection: KAFKA_BROKERS, KAFKA_APIKEY (+ KAFKA_SASL_MECHANISM), KAFKA_CERT, KAFKA_PROPERTIES.

Here: the --kafka-* options (read here only: the producer gets a `ProducerConfig`), the data set and
the brokers checked before the run, and each process's `KafkaLoad` made at test start and closed when
the load finishes.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from locust import events
from locust.runners import MasterRunner, WorkerRunner

import loadtesting.locust_plugin  # capacity search, sar capture, phases
import monitors.locust_plugin  # noqa: F401  - pipeline monitor, ClickHouse sink, thresholds
from generators import open_model
from generators.kafka_producer import KafkaLoad, LatencyReader, ProducerConfig, load_records
from lifecycle import end
from lifecycle.end import add_run_extra
from loadtesting import capacity, rate_capacity
from monitors.kafka_latency import ArrivalWindows
from plumbing import run_state, settings, web_options
from plumbing.options import OptionError, non_negative_float, non_negative_int, positive_float, require
from plumbing.web_options import per_test

loadtesting.locust_plugin.generates_rate()  # --capacity-search searches messages/s (docs/capacity.md)
REPORT_WINDOWS = "kafka_latency_windows"  # a worker's report key (Locust's own: "stats", "errors", …)


@events.init_command_line_parser.add_listener
def _options(parser) -> None:
    g = parser.add_argument_group("Kafka producers")
    g.add_argument("--kafka-brokers", default=None, env_var="KAFKA_BROKERS",
                   help=f"bootstrap servers (default {settings.KAFKA_BROKERS.default})")
    g.add_argument("--kafka-topic", default="performance-test", env_var="LOCUST_KAFKA_TOPIC",
                   help="input topic of the pipeline (default %(default)s)")
    per_test(g.add_argument("--kafka-messages", type=non_negative_int, default=0, env_var="LOCUST_KAFKA_MESSAGES",
                   help="total messages over all users and processes, then stop (default %(default)s: until stopped)"))
    g.add_argument("--kafka-key-field", default="identifier", env_var="LOCUST_KAFKA_KEY_FIELD",
                   help="record field used as the message key (default %(default)s)")
    g.add_argument("--kafka-data-file", default=settings.KAFKA_DATA_FILE.default, env_var=settings.KAFKA_DATA_FILE.env,
                   help="JSON array of records to cycle through (default the suite's conf/kafka-data.json)")
    per_test(g.add_argument("--kafka-rate", type=non_negative_float, default=0.0, env_var="LOCUST_KAFKA_RATE",
                   help="open model: messages per second over all processes, each started at its planned "
                        "instant by a free user or dropped and counted (default 0: as fast as possible, in "
                        "bursts; docs/open-model.md)"))
    g.add_argument("--kafka-request-events", action="store_true", default=False,
                   env_var="LOCUST_KAFKA_REQUEST_EVENTS",
                   help="fire events.request for every delivered message (for request listeners; "
                        "slower) instead of adding deliveries to the statistics in bulk")
    g.add_argument("--kafka-linger-ms", type=non_negative_float, default=5.0, env_var="LOCUST_KAFKA_LINGER_MS",
                   help="librdkafka linger.ms: batching delay (default %(default)s)")
    g.add_argument("--kafka-acks", default="all", choices=("0", "1", "all", "-1"), env_var="LOCUST_KAFKA_ACKS",
                   help="acks: 0, 1 or all (default %(default)s)")
    g.add_argument("--kafka-latency-topic", default="", env_var="LOCUST_KAFKA_LATENCY_TOPIC",
                   help="read this output topic and report end-to-end latency in its own E2E row (outside Aggregated)")
    g.add_argument("--kafka-e2e-timeout", type=non_negative_float, default=60.0, env_var="LOCUST_KAFKA_E2E_TIMEOUT",
                   help="after the last delivery, wait this long for the output messages (default %(default)s)")
    g.add_argument("--kafka-connect-timeout", type=positive_float, default=10.0, env_var="LOCUST_KAFKA_CONNECT_TIMEOUT",
                   help="seconds to reach the brokers at test start before giving up (default %(default)s)")
    g.add_argument("--kafka-processes", type=non_negative_int, default=0, env_var="LOCUST_KAFKA_PROCESSES",
                   help="number of worker processes sharing --kafka-messages with --master/--worker "
                        "(--processes sets it by itself)")


def producer_config(o) -> ProducerConfig:
    """The producer's settings from this module's options."""
    return ProducerConfig(brokers=o.kafka_brokers, topic=o.kafka_topic, messages=o.kafka_messages,
                          key_field=o.kafka_key_field, request_events=o.kafka_request_events,
                          linger_ms=o.kafka_linger_ms, acks=o.kafka_acks, rate=o.kafka_rate,
                          processes=o.kafka_processes, e2e_timeout=o.kafka_e2e_timeout,
                          search_start_rate=rate_capacity.start_rate(o) if capacity.searching(o) else None)


@dataclass
class KafkaRun:
    """This process's Kafka state for one run (plumbing.run_state)."""

    records: list = field(default_factory=list)  # --kafka-data-file, cycled through
    load: KafkaLoad | None = None  # not on a master


@dataclass
class LatencyWindows:
    """The output latencies by the second they were read, exact (monitors.kafka_latency.ArrivalWindows):
    this process's reader's and, on a master, its workers' merged from their reports. A capacity
    search judges a step by its window's (plumbing.run_state)."""

    windows: ArrivalWindows = field(default_factory=ArrivalWindows)


def latency_windows(environment) -> ArrivalWindows:
    return run_state.of(environment, LatencyWindows).windows


@events.init.add_listener
def _report_windows(environment, **_kw) -> None:
    def on_report_to_master(client_id, data, **_kw) -> None:
        taken = latency_windows(environment).take()
        if taken:
            data[REPORT_WINDOWS] = taken

    def on_worker_report(client_id, data, **_kw) -> None:
        if REPORT_WINDOWS in data:
            latency_windows(environment).merge(data[REPORT_WINDOWS])

    environment.events.report_to_master.add_listener(on_report_to_master)
    environment.events.worker_report.add_listener(on_worker_report)


@events.test_start.add_listener
def _new_windows(environment, **_kw) -> None:
    run_state.reset(environment, LatencyWindows)  # each test its own (the web UI can start several)


@events.init.add_listener
def _check(environment, **_kw) -> None:
    o = environment.parsed_options
    if o is None:
        return
    if capacity.searching(o):
        require(bool(o.kafka_latency_topic),
                "--capacity-search: expected --kafka-latency-topic (the processor's output: what arrives there "
                "and how late is what the search judges)")
        # The search sets the rate and runs until it ends: a rate or a budget given too would be
        # ignored or cut the search short.
        for dest, flag, value in (("kafka_rate", "--kafka-rate", o.kafka_rate),
                                  ("kafka_messages", "--kafka-messages", o.kafka_messages)):
            require(not value, f"{flag} {value:g}: a capacity search sets the rate itself and runs until it "
                    "ends (--capacity-start-rate, --capacity-max-rate); expected none with --capacity-search")
            web_options.fix(dest, value, "a capacity search sets the rate itself and runs until it ends "
                            "(--capacity-search: --capacity-start-rate, --capacity-max-rate); leave it at 0")
        loadtesting.locust_plugin.use_rate_search(environment, loadtesting.locust_plugin.RateTarget(
            o.kafka_topic, lambda rate, ramp: open_model.set_rate(environment, o.kafka_topic, rate, ramp), "PRODUCE",
            unit="messages", output=("E2E", o.kafka_latency_topic),
            window_latencies=lambda start, end: latency_windows(environment).histogram(start, end)))
    if isinstance(environment.runner, MasterRunner):
        return  # the master produces nothing
    if isinstance(environment.runner, WorkerRunner):
        return  # a worker knows the brokers and data only from the master's spawn message: checked at test start
    _prepare(environment)


def _prepare(environment) -> None:
    """The data set and one look at the brokers: a bad file or unreachable brokers end the run in one line."""
    o = environment.parsed_options
    try:
        run_state.of(environment, KafkaRun).records = load_records(o.kafka_data_file)
        from plumbing import kafka_conf

        conf = kafka_conf.client_config(o.kafka_brokers)
    except ValueError as exc:
        raise OptionError(str(exc)) from None
    _check_brokers(conf, o.kafka_connect_timeout)


def _check_brokers(conf: dict, timeout: float) -> None:
    """Fail fast, in one line, when the brokers cannot be reached or refuse the credentials."""
    from confluent_kafka.admin import AdminClient

    from plumbing.blocking import run_blocking

    errors: list[str] = []
    admin = AdminClient({**conf, "log_level": 0, "error_cb": lambda err: errors.append(str(err))})
    try:
        run_blocking(admin.list_topics, timeout=timeout)
    except Exception as exc:  # noqa: BLE001 - KafkaException carries librdkafka's reason
        reason = errors[-1] if errors else str(exc)
        raise OptionError(f"Kafka brokers {conf['bootstrap.servers']!r} unreachable or refusing us: {reason}") \
            from None


@events.test_start.add_listener
def _start(environment, **_kw) -> None:
    if isinstance(environment.runner, MasterRunner):
        return
    if isinstance(environment.runner, WorkerRunner):
        _prepare(environment)  # with the run's options, which came with the master's spawn message
    o, run = environment.parsed_options, run_state.of(environment, KafkaRun)
    load = KafkaLoad(environment, producer_config(o), run.records)
    if o.kafka_latency_topic:
        load.reader = LatencyReader(environment, load.conf, o.kafka_latency_topic, load.index, load.count,
                                    int(time.time() * 1000),
                                    latency_windows(environment) if capacity.searching(o) else None)
    run.load = load


@end.load_finished.add_listener
def _load_finished(environment, **_kw) -> None:
    load = run_state.of(environment, KafkaRun).load
    if load is None:
        return
    load.close()
    extra = {"kafka_sent": load.sent, "kafka_delivered": load.delivered, "kafka_failed": load.failed}
    if load.reader is not None:
        extra["kafka_e2e"] = load.reader.stats.total()
    add_run_extra(environment, **extra)


def load(environment) -> KafkaLoad | None:
    """This process's producers for the run (None on a master, or before the test starts)."""
    return run_state.of(environment, KafkaRun).load
