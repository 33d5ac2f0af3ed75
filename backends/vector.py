"""vector: `[xapi_tracking]` lines appended to the log file Vector tails (Aspects' Vector pipeline).

Sampler: events received, sent and errors of one sink component (default clickhouse_xapi).

Read from Vector's Prometheus exporter (an `internal_metrics` source feeding a
`prometheus_exporter` sink): `component_received_events_total`, `component_sent_events_total`
and `component_errors_total`, with or without the `vector_` namespace prefix. Several URLs may
be given (one per Vector instance, e.g. a Kubernetes DaemonSet): their counters are summed.
Vector < 0.55 can instead be read through its GraphQL API (`--vector-graphql-url`), which 0.55
removed. lag = received - sent: events inside the sink, buffered or in flight.
"""

from __future__ import annotations

import errno
import json
import os
import re
import time
import urllib.request
from dataclasses import dataclass

import openedx_erb
from backends.base import Sender
from openedx_erb import wire
from plumbing import settings
from plumbing.blocking import run_blocking
from plumbing.options import OptionError

NAME = "vector"
REFERENCE_CONSUMER = "targets.pipeline"
KEY_FIGURES = ("events_received", "events_sent", "lag", "errors")  # of a sample, in the monitor's console line and web tab

GRAPHQL_QUERY = """{
  sinks(filter:{componentId:{equals:"%s"}}) {
    edges { node { ...on Sink { componentId, componentType,
      metrics { receivedEventsTotal { receivedEventsTotal }, sentEventsTotal { sentEventsTotal } } } } }
  }
}"""

_SAMPLE = re.compile(r'^(?P<name>[a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(?P<labels>[^}]*)\})?\s+(?P<value>\S+)')
_LABEL = re.compile(r'(\w+)="((?:[^"\\]|\\.)*)"')


def add_arguments(group) -> None:
    group.add_argument("--vector-log-file", default=settings.VECTOR_LOG_FILE.default, env_var=settings.VECTOR_LOG_FILE.env,
                       help="vector: the log file Vector tails (default the checkout's .run/tracking.log)")
    group.add_argument("--vector-lines", default="xapi", choices=("xapi", "tracking", "both"),
                       env_var="LOCUST_VECTOR_LINES",
                       help="vector: xapi ([xapi_tracking] lines, what Aspects stores), tracking, or both")


def add_monitor_arguments(group) -> None:
    group.add_argument("--vector-metrics-url", default="http://127.0.0.1:9598/metrics",
                       env_var="LOCUST_VECTOR_METRICS_URL",
                       help="Vector prometheus_exporter URL; comma-separate one per instance (default "
                            "http://127.0.0.1:9598/metrics)")
    group.add_argument("--vector-graphql-url", default=None, env_var="LOCUST_VECTOR_GRAPHQL_URL",
                       help="Vector < 0.55 only: read the GraphQL API instead (e.g. http://vector:8686/graphql)")
    group.add_argument("--vector-component", default="clickhouse_xapi", env_var="LOCUST_VECTOR_COMPONENT",
                       help="sink component id (default %(default)s)")


def parse_exposition(text: str, component: str) -> dict[str, float]:
    """Sum the component's received/sent/error counters in Prometheus text exposition format."""
    totals = {"received": 0.0, "sent": 0.0, "errors": 0.0}
    found = False
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        m = _SAMPLE.match(line)
        if not m:
            continue
        name = m.group("name").removeprefix("vector_")
        key = {"component_received_events_total": "received", "component_sent_events_total": "sent",
               "component_errors_total": "errors"}.get(name)
        if key is None:
            continue
        labels = dict(_LABEL.findall(m.group("labels") or ""))
        if labels.get("component_id") != component:
            continue
        # Received counts every event arriving; sent may be split by output: sum all outputs.
        totals[key] += float(m.group("value"))
        found = True
    if not found:
        raise LookupError(f"no metrics for Vector component {component!r}")
    return totals


class Sampler:
    name = "vector"

    def __init__(self, metrics_urls: str = "http://127.0.0.1:9598/metrics", component: str = "clickhouse_xapi",
                 graphql_url: str | None = None, timeout: float = 5.0) -> None:
        self.urls = [u.strip() for u in (metrics_urls or "").split(",") if u.strip()]
        self.component, self.graphql_url, self.timeout = component, graphql_url, timeout
        if not self.urls and not graphql_url:
            raise ValueError("--vector-metrics-url is empty; expected a URL (or --vector-graphql-url)")

    def _get(self, url: str) -> str:
        with urllib.request.urlopen(url, timeout=self.timeout) as r:
            return r.read().decode()

    def _graphql(self) -> dict:
        body = json.dumps({"query": GRAPHQL_QUERY % self.component}).encode()
        req = urllib.request.Request(self.graphql_url, body, {"Content-Type": "application/json"})
        with urllib.request.urlopen(req, timeout=self.timeout) as r:
            data = json.loads(r.read())
        edges = data["data"]["sinks"]["edges"]
        if not edges:
            raise LookupError(f"no Vector sink {self.component!r} in the GraphQL API")
        metrics = edges[0]["node"]["metrics"]
        # Null until the first event arrives.
        received = (metrics.get("receivedEventsTotal") or {}).get("receivedEventsTotal") or 0.0
        sent = (metrics.get("sentEventsTotal") or {}).get("sentEventsTotal") or 0.0
        return {"received": float(received), "sent": float(sent), "errors": None}

    def _read(self) -> dict:
        if self.graphql_url:
            t = self._graphql()
            source = "graphql"
        else:
            t = {"received": 0.0, "sent": 0.0, "errors": 0.0}
            for url in self.urls:
                for k, v in parse_exposition(self._get(url), self.component).items():
                    t[k] += v
            source = "prometheus"
        return {"component": self.component, "events_received": t["received"], "events_sent": t["sent"],
                "errors": t["errors"], "lag": max(t["received"] - t["sent"], 0.0), "source": source,
                "instances": 1 if self.graphql_url else len(self.urls)}

    def sample(self) -> dict:
        return run_blocking(self._read)

    def backlog(self, sample: dict) -> int | None:
        return int(sample["lag"])

    def close(self) -> None:
        pass


def check_reachable(o) -> None:
    # What the sender does at test start (make the folder, open for append), done now so a
    # bad path is one line before the run instead of an error inside the test_start handler.
    try:
        os.makedirs(os.path.dirname(os.path.abspath(o.vector_log_file)), exist_ok=True)
        os.close(os.open(o.vector_log_file, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644))
    except OSError as exc:
        why = exc.strerror
        if exc.errno in (errno.EEXIST, errno.ENOTDIR):
            blocker = os.path.dirname(os.path.abspath(o.vector_log_file))
            while blocker != "/" and not os.path.exists(blocker):
                blocker = os.path.dirname(blocker)
            why = f"{blocker} is a file, not a folder"
        raise OptionError(f"--vector-log-file {o.vector_log_file!r}: {why}; "
                          "expected a file path in a folder that can be written") from None


def sender(environment, o) -> VectorSender:
    return VectorSender(environment, NAME, path=o.vector_log_file, lines=o.vector_lines)


def sampler(options) -> Sampler:
    return Sampler(options.vector_metrics_url, options.vector_component, options.vector_graphql_url)


def entry(opts: dict) -> str:
    return opts.get("vector_log_file") or ""


@dataclass
class VectorSender(Sender):
    """vector: append `[xapi_tracking]` (and optionally `[tracking]`) lines to the log Vector tails.

    The xAPI lines are what the LMS logs: event-routing-backends' statements (openedx_erb), built here.
    """

    path: str = ".run/tracking.log"
    lines: str = "xapi"
    _fd: int = -1

    def __post_init__(self) -> None:
        os.makedirs(os.path.dirname(os.path.abspath(self.path)), exist_ok=True)
        # O_APPEND: one write() per line keeps lines whole with several writer processes.
        self._fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        if self.lines in ("xapi", "both"):
            openedx_erb.setup()  # Django for ERB now, not inside the first user's send

    def send(self, event: dict, planned: float | None = None) -> None:
        start, t0 = time.time(), time.perf_counter()
        text = ""
        if self.lines in ("tracking", "both"):
            text += wire.tracking_line(event)
        if self.lines in ("xapi", "both"):
            try:
                text += "".join(wire.xapi_line(s) for s in openedx_erb.statements(event))
            except openedx_erb.NotTransformable as exc:  # the LMS would log no xapi line: a failed event
                self._fire(event["name"], start, t0, 0, exc, planned)
                return
        data = text.encode()
        try:
            os.write(self._fd, data)
        except OSError as exc:
            self._fire(event["name"], start, t0, 0, exc, planned)
            return
        self._fire(event["name"], start, t0, len(data), None, planned)

    def close(self, timeout: float = 30.0) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1
