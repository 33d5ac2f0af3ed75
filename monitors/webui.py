"""The pipeline in Locust's web UI: live charts over the whole run, and the latest figures.

- ``/pipeline``: a page of its own (Locust's extra tabs hold tables only) with one chart per unit —
  backlog per source, ClickHouse lag, end-to-end latency p50/p95 per interval, offered / stored /
  dropped per second, the MQTT broker's `$SYS` figures, Kafka's latency windows, the generator's
  CPU — updating as samples arrive, and the latest sample's table below. It needs no network: the
  charts are drawn by the page's own few lines of SVG code (``monitors/webui_page/pipeline.html``).
- ``/pipeline/history``: the same data as JSON for scripts; ``/pipeline/latest``: the table's rows.
- The "Pipeline" tab of Locust's UI keeps the table (refreshed with the UI's stats poll).
Every route is behind the web UI's own authentication when it has one (``--web-login``).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from monitors.figures import KEY_FIGURES, flatten
from monitors.history import History, points
from plumbing import run_state

TAB_KEY = "pipeline"
MAX_ROWS = 300  # a big sample would make the UI table slow to render
PAGE = Path(__file__).with_name("webui_page") / "pipeline.html"


@dataclass
class PipelineHistory:
    """The current test's chart points in this Locust process (plumbing.run_state)."""

    run_id: str = ""
    history: History = field(default_factory=History)
    last_time: float | None = None
    last_rows: float | None = None  # ClickHouse total_rows at the previous sample


def on_sample(environment, run_id: str, time: float, stats: dict, backlogs: dict,  # noqa: A002 - the hook's name
              request_rows: list[dict], **_kw) -> None:
    """A listener of monitors.locust_plugin.sampled: one point per series."""
    state = run_state.of(environment, PipelineHistory)
    if state.run_id != run_id:  # a new test from the web UI: a new chart
        state.run_id, state.history, state.last_time, state.last_rows = run_id, History(), None, None
    covers = time - state.last_time if state.last_time is not None else 1.0
    rows = (stats.get("clickhouse") or {}).get("total_rows")
    stored = None
    if isinstance(rows, (int, float)) and state.last_rows is not None and covers > 0:
        stored = max(rows - state.last_rows, 0) / covers
    if isinstance(rows, (int, float)):
        state.last_rows = rows
    state.history.add(time, points(stats, backlogs, request_rows, stored), covers)
    state.last_time = time


def latest_rows(environment, run_id: str, latest: dict) -> dict:
    """The newest sample as table rows, plus end-to-end percentiles from Locust's stats."""
    rows: list[dict] = []
    for source, sample in (latest.get("stats") or {}).items():
        if not isinstance(sample, dict):
            continue
        if "error" in sample:
            rows.append({"source": source, "metric": "error", "value": sample["error"]})
            continue
        keys = KEY_FIGURES.get(source)
        if sample.get("lag_unknown"):  # missing from the figures below, not 0
            rows.append({"source": source, "metric": "lag", "value": f"unknown: {sample['lag_unknown']}"})
        for metric, value in flatten(sample):
            if keys is None or metric.split(".")[0] in keys:
                rows.append({"source": source, "metric": metric, "value": round(value, 3)})
    if latest.get("backlog") is not None:
        rows.append({"source": "monitor", "metric": "backlog", "value": latest["backlog"]})
    for (name, method), entry in sorted(environment.stats.entries.items()):
        if method != "E2E" or not entry.num_requests:
            continue
        # Since the test's start; Locust's buckets round up, so a percentile is at most the maximum.
        top = entry.max_response_time or 0
        for pct in (0.5, 0.95, 0.99):
            rows.append({"source": "e2e", "metric": f"{name} p{int(pct * 100)} ms (whole test)",
                         "value": min(entry.get_response_time_percentile(pct), top)})
        rows.append({"source": "e2e", "metric": f"{name} max ms", "value": top})
        rows.append({"source": "e2e", "metric": f"{name} count", "value": entry.num_requests})
    return {"run_id": run_id or None, "time": latest.get("time"),
            "age_s": round(time.time() - latest["time"], 1) if latest.get("time") else None,
            "rows": rows[:MAX_ROWS]}


def history_json(environment, run_id: str, latest: dict) -> dict:
    state = run_state.of(environment, PipelineHistory)
    chart = state.history.as_json() if state.run_id == run_id else History().as_json()
    return {**latest_rows(environment, run_id, latest), **chart}


def install(environment, latest: Callable[[], tuple[str, dict]]) -> None:
    """Add the page, the JSON routes and the tab to the web UI (if any); `latest()` gives the run id
    and the monitor's newest sample."""
    web_ui = environment.web_ui
    if web_ui is None:
        return
    from flask import Response, jsonify, request

    web_ui.template_args["extended_tabs"] = [{"title": "Pipeline", "key": TAB_KEY}]
    web_ui.template_args["extended_tables"] = [{"key": TAB_KEY, "structure": [
        {"key": "source", "title": "Source"}, {"key": "metric", "title": "Metric"}, {"key": "value", "title": "Value"}]}]

    @web_ui.app.route("/pipeline")
    @web_ui.auth_required_if_enabled
    def pipeline_page():
        return Response(PAGE.read_text(), mimetype="text/html")

    @web_ui.app.route("/pipeline/history")
    @web_ui.auth_required_if_enabled
    def pipeline_history():
        return jsonify(history_json(environment, *latest()))

    @web_ui.app.route("/pipeline/latest")
    @web_ui.auth_required_if_enabled
    def pipeline_latest():
        return jsonify(latest_rows(environment, *latest()))

    @web_ui.app.after_request
    def add_pipeline_rows(response):
        # The UI polls /stats/requests; its extended_stats feed the extra tab's table.
        if request.path != "/stats/requests" or response.status_code != 200 or not response.is_json:
            return response
        body = response.get_json()
        rows = [{"source": "charts", "metric": "the whole run, live", "value": "open /pipeline"},
                *latest_rows(environment, *latest())["rows"]]
        body["extended_stats"] = [{"key": TAB_KEY, "data": rows}]
        response.set_data(json.dumps(body))
        return response
