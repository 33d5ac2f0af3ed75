"""A live "Pipeline" tab in the Locust web UI: the monitor's latest figures and e2e latency.

The tab is a table of (source, metric, value) rows that the UI refreshes with its stats poll;
the same rows are served as JSON at ``/pipeline/latest`` for scripts and tests.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable

from monitors.figures import KEY_FIGURES, flatten

TAB_KEY = "pipeline"
MAX_ROWS = 300  # a big sample would make the UI table slow to render


def latest_rows(environment, run_id: str, latest: dict) -> dict:
    """The newest sample as table rows, plus E2E request percentiles from Locust's stats."""
    rows: list[dict] = []
    for source, sample in (latest.get("stats") or {}).items():
        if not isinstance(sample, dict):
            continue
        if "error" in sample:
            rows.append({"source": source, "metric": "error", "value": sample["error"]})
            continue
        keys = KEY_FIGURES.get(source)
        for metric, value in flatten(sample):
            if keys is None or metric.split(".")[0] in keys:
                rows.append({"source": source, "metric": metric, "value": round(value, 3)})
    if latest.get("backlog") is not None:
        rows.append({"source": "monitor", "metric": "backlog", "value": latest["backlog"]})
    for (name, method), entry in sorted(environment.stats.entries.items()):
        if method != "E2E" or not entry.num_requests:
            continue
        for pct in (0.5, 0.95, 0.99):
            rows.append({"source": "e2e", "metric": f"{name} p{int(pct * 100)} ms",
                         "value": entry.get_response_time_percentile(pct)})
        rows.append({"source": "e2e", "metric": f"{name} count", "value": entry.num_requests})
    return {"run_id": run_id or None, "time": latest.get("time"),
            "age_s": round(time.time() - latest["time"], 1) if latest.get("time") else None,
            "rows": rows[:MAX_ROWS]}


def install(environment, latest: Callable[[], tuple[str, dict]]) -> None:
    """Add the tab to the web UI (if any); `latest()` gives the run id and the monitor's newest sample."""
    web_ui = environment.web_ui
    if web_ui is None:
        return
    from flask import jsonify, request

    web_ui.template_args["extended_tabs"] = [{"title": "Pipeline", "key": TAB_KEY}]
    web_ui.template_args["extended_tables"] = [{"key": TAB_KEY, "structure": [
        {"key": "source", "title": "Source"}, {"key": "metric", "title": "Metric"}, {"key": "value", "title": "Value"}]}]

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
        body["extended_stats"] = [{"key": TAB_KEY, "data": latest_rows(environment, *latest())["rows"]}]
        response.set_data(json.dumps(body))
        return response
