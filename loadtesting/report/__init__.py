"""Markdown results of a run, with charts: ``python -m loadtesting.report <run-id>`` (or ``make report``).

Writes ``results/<run-id>/<kind>-results.md`` (kind = http, mqtt, kafka …), its self-contained twin
``<kind>-results.html`` (loadtesting.report.html: the same markdown converted, charts embedded) and PNG charts under
``results/<run-id>/charts/``: what was tested and how, the capacity found, per-phase tables of
Locust figures and sar CPU/memory/disk/network, pipeline lag and end-to-end latency when the run
has them, and findings in plain language.

Data comes from ClickHouse (the monitor's tables) when the run is there, else from the run
folder's files (stats.json or Locust CSV, request_stats.jsonl, samples.jsonl, capacity.json,
phases.jsonl); the sar file and the failure messages always come from the folder (ClickHouse
holds neither).

Percentiles of the whole run and of each phase merge the sampling intervals' histograms (in SQL
on ClickHouse, in Python on the folder's request_stats.jsonl): the whole run's equal Locust's
final figures (stats.json). Open-model runs also have the response time from each request's
planned start (`timing = 'planned'` rows): the report gives both and the difference.

The package, in the order a report is made: data (load) -> findings -> charts -> markdown (render).
"""

from loadtesting.report.data import RunData, load
from loadtesting.report.markdown import render

__all__ = ["RunData", "load", "render"]
