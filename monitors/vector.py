"""Vector sampler: events received, sent and errors of one sink component (default clickhouse_xapi).

Read from Vector's Prometheus exporter (an `internal_metrics` source feeding a
`prometheus_exporter` sink): `component_received_events_total`, `component_sent_events_total`
and `component_errors_total`, with or without the `vector_` namespace prefix. Several URLs may
be given (one per Vector instance, e.g. a Kubernetes DaemonSet): their counters are summed.
Vector < 0.55 can instead be read through its GraphQL API (`--vector-graphql-url`), which 0.55
removed. lag = received - sent: events inside the sink, buffered or in flight.
"""

from __future__ import annotations

import json
import re
import urllib.request

from plumbing.blocking import run_blocking

GRAPHQL_QUERY = """{
  sinks(filter:{componentId:{equals:"%s"}}) {
    edges { node { ...on Sink { componentId, componentType,
      metrics { receivedEventsTotal { receivedEventsTotal }, sentEventsTotal { sentEventsTotal } } } } }
  }
}"""

_SAMPLE = re.compile(r'^(?P<name>[a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(?P<labels>[^}]*)\})?\s+(?P<value>\S+)')
_LABEL = re.compile(r'(\w+)="((?:[^"\\]|\\.)*)"')


def add_arguments(group) -> None:
    group.add_argument("--vector-metrics-url", default="http://127.0.0.1:9598/metrics",
                       env_var="LOCUST_VECTOR_METRICS_URL",
                       help="Vector prometheus_exporter URL; comma-separate one per instance (default "
                            "http://127.0.0.1:9598/metrics)")
    group.add_argument("--vector-graphql-url", default=None, env_var="LOCUST_VECTOR_GRAPHQL_URL",
                       help="Vector < 0.55 only: read the GraphQL API instead (e.g. http://vector:8686/graphql)")
    group.add_argument("--vector-component", default="clickhouse_xapi", env_var="LOCUST_VECTOR_COMPONENT",
                       help="sink component id (default clickhouse_xapi)")


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


def from_options(options) -> Sampler:
    return Sampler(options.vector_metrics_url, options.vector_component, options.vector_graphql_url)
