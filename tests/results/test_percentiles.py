"""Exact percentiles from merged interval histograms, and latency from the planned start (open model)."""

from __future__ import annotations

import json
import re
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest

from loadtesting.phases import Phase
from loadtesting.report.data import QUERIES, RunData, merge_rows, read_request_stats, window_latency
from monitors import schema
from plumbing import chclient
from stack import free_port
from tests.helpers import log_of, run_locust, start_locust
from tests.monitor.conftest import chdb_render

LOCUSTFILE = str(Path(__file__).with_name("late_locustfile.py"))
PCTS = ("p50_ms", "p95_ms", "p99_ms")


@dataclass
class LateRun:
    run_id: str
    folder: Path
    url: str
    output: str

    def final(self) -> dict:
        return json.loads((self.folder / "stats.json").read_text())

    def raw(self) -> list[dict]:
        return [json.loads(line) for line in (self.folder / "raw.jsonl").read_text().splitlines()]


@pytest.fixture(scope="module")
def late_run(clickhouse, tmp_path_factory) -> LateRun:
    """10 open-model users falling behind their plan for 4 s, sampled every 0.5 s (several intervals)."""
    results = tmp_path_factory.mktemp("late")
    raw = results / "raw.jsonl"
    done = run_locust(
        [LOCUSTFILE, "--results", str(results), "-u", "10", "-r", "100",
         "-t", "4s", "--monitor-interval", "0.5", "--clickhouse-url", clickhouse.url, "--spill-dir",
         str(results / "spill")], via=["loadtesting.run"], timeout=180,
        env={"LATENCY_LOG": str(raw), "LOCUST_CLICKHOUSE_URL": clickhouse.url})
    assert done.returncode == 0, done.stdout[-3000:] + log_of(done.stderr)
    run_id = re.search(r"^run (\S+):", done.stdout, re.M).group(1)
    folder = results / run_id
    raw.rename(folder / "raw.jsonl")
    return LateRun(run_id, folder, clickhouse.url, done.stdout + done.stderr)


def merged_on_18(run: LateRun) -> dict[tuple[str, str, str], dict]:
    client = chclient.connect(run.url)
    rows = client.execute(QUERIES["requests"].format(db="event_sink"), {"run": run.run_id})
    client.disconnect()
    return {(timing, rtype, name): dict(zip(("requests", "failures", "avg_ms", "max_ms", "timed", *PCTS), rest,
                                            strict=True))
            for timing, rtype, name, *rest in rows}


def final_rows(run: LateRun) -> dict[tuple[str, str, str], dict]:
    body = run.final()
    out = {("service", r["type"], r["name"]): r for r in body["requests"]}
    out.update({("planned", r["type"], r["name"]): r for r in body["from_planned_start"]})
    return out


def aggregated_intervals(run: LateRun) -> list[dict]:
    return [r for r in read_request_stats(run.folder)
            if r["timing"] == "service" and r["request_type"] == "" and r["name"] == "Aggregated"]


def resolution(ms: float) -> float:
    """Half the width of Locust's response-time bucket around `ms` (ms < 100 rounds to 1 ms, then 2 digits)."""
    return 0.5 if ms < 100 else 5 if ms < 1000 else 50 if ms < 10_000 else 500


# -- whole run -------------------------------------------------------------------------------------
def test_merged_histograms_equal_locusts_final_percentiles(late_run):
    assert len(aggregated_intervals(late_run)) >= 4  # several intervals were merged
    merged, final = merged_on_18(late_run), final_rows(late_run)
    assert set(merged) == set(final)
    for key, row in final.items():
        got = merged[key]
        assert got["requests"] == row["requests"], key
        assert got["max_ms"] == pytest.approx(row["max_ms"], abs=1e-9), key
        for p in PCTS:
            assert got[p] == row[p], (key, p)


def test_merged_histograms_equal_locusts_final_percentiles_for_an_http_run(capacity_run):
    client = chclient.connect(capacity_run.clickhouse_url)
    rows = client.execute(QUERIES["requests"].format(db="event_sink"), {"run": capacity_run.run_id})
    intervals = client.execute(QUERIES["timeline"].format(db="event_sink"), {"run": capacity_run.run_id})
    client.disconnect()
    assert len(intervals) >= 10
    merged = {name: dict(zip(("requests", "max_ms", *PCTS), (n, mx, p50, p95, p99), strict=True))
              for timing, _t, name, n, _f, _a, mx, _timed, p50, p95, p99 in rows if timing == "service"}
    final = {r["name"]: r for r in capacity_run.json("stats.json")["requests"]}
    for name in ("/work", "Aggregated"):
        assert merged[name]["requests"] == final[name]["requests"]
        assert [merged[name][p] for p in PCTS] == [final[name][p] for p in PCTS], name


def test_no_percentile_is_above_the_maximum(late_run):
    # Every `slow` request reports 147 ms, whose Locust bucket is 150 (locust#1563).
    with open(late_run.folder / "locust_stats.csv") as f:
        locust_csv = {line.split(",")[1].strip('"'): line.split(",") for line in f}
    header = [h.strip('"\n') for h in locust_csv["Name"]]
    assert locust_csv["slow"][header.index("95%")] == "150"  # Locust's own figure, above the maximum
    slow = final_rows(late_run)[("service", "PLAN", "slow")]
    assert slow["max_ms"] == 147.0 and [slow[p] for p in PCTS] == [147.0] * 3
    assert [merged_on_18(late_run)[("service", "PLAN", "slow")][p] for p in PCTS] == [147.0] * 3


def test_the_folder_fallback_merges_to_the_same_figures(late_run):
    rows = read_request_stats(late_run.folder)
    merged = merge_rows(rows, [{"time": 0}, {"time": 1}])
    final = final_rows(late_run)
    for timing, timed_rows in merged.items():
        for r in timed_rows:
            want = final[(timing, r["type"], r["name"])]
            assert (r["requests"], *[r[p] for p in PCTS]) == (want["requests"], *[want[p] for p in PCTS])


# -- phases ----------------------------------------------------------------------------------------
def test_a_phase_percentile_is_the_one_of_its_raw_latencies_to_the_bucket(late_run):
    intervals = aggregated_intervals(late_run)
    raw = late_run.raw()
    assert len(raw) == late_run.final()["requests"][-1]["requests"]  # one raw line per request Locust logged
    # Requests were logged in the order the raw file holds them, so interval i holds the next `requests` of them.
    edges = [0]
    for r in intervals:
        edges.append(edges[-1] + r["requests"])
    first, last = 1, len(intervals) - 2  # a phase over the middle intervals
    phase = Phase("middle", intervals[first - 1]["time_ms"] / 1000, intervals[last]["time_ms"] / 1000)
    values = sorted(line["ms"] for line in raw[edges[first]:edges[last + 1]])
    for data in (RunData(late_run.run_id, "clickhouse", clickhouse=(late_run.url, "event_sink")),
                 RunData(late_run.run_id, "csv", intervals=[r for r in read_request_stats(late_run.folder)
                                                            if r["name"] == "Aggregated"])):
        got = window_latency(data, phase.start, phase.end)["service"]
        assert got["requests"] == len(values), data.source
        for p, key in ((0.5, "p50_ms"), (0.95, "p95_ms"), (0.99, "p99_ms")):
            exact = values[int(len(values) * p)]
            assert abs(got[key] - exact) <= resolution(exact), (data.source, key, got[key], exact)
            assert got[key] <= got["max_ms"]


# -- both engines ------------------------------------------------------------------------------------
def test_the_merge_sql_gives_the_same_figures_on_current_clickhouse(late_run, chdb_session, tmp_path):
    for statement in schema.statements("pct_test"):
        chdb_session.query(statement)
    columns = list(schema.COLUMNS["load_test_request_stats"])
    path = tmp_path / "rows.jsonl"
    path.write_text("".join(json.dumps({**r, "timestamp": int(r["timestamp"])}) + "\n"
                            for r in read_request_stats(late_run.folder)))
    cols = ", ".join(columns)
    chdb_session.query(f"INSERT INTO pct_test.load_test_request_stats ({cols}) SELECT {cols} "
                       f"FROM file('{path}', 'JSONEachRow')")
    out = chdb_session.query(chdb_render(QUERIES["requests"].format(db="pct_test"), {"run": late_run.run_id}),
                             "JSONCompact")
    current = {(r[0], r[1], r[2]): [r[3], *r[8:]] for r in json.loads(str(out))["data"]}
    old = {k: [v["requests"], *[v[p] for p in PCTS]] for k, v in merged_on_18(late_run).items()}
    assert current == old
    window = chdb_render(QUERIES["window"].format(db="pct_test"), {"run": late_run.run_id, "t0": 0, "t1": 2**62})
    assert len(json.loads(str(chdb_session.query(window, "JSONCompact")))["data"]) == 2  # service and planned


# -- latency from the planned start --------------------------------------------------------------------
def test_latency_from_the_planned_start_includes_the_late_start(late_run):
    final = final_rows(late_run)
    raw = late_run.raw()
    for name in ("fast", "slow", "Aggregated"):
        rtype = "" if name == "Aggregated" else "PLAN"
        service, planned = final[("service", rtype, name)], final[("planned", rtype, name)]
        assert planned["requests"] == service["requests"]  # every open-model request, once
        for key in (*PCTS, "max_ms"):
            assert planned[key] >= service[key], (name, key)
    # Each request waited (start - planned) before it was sent: the averages differ by at least that.
    late_ms = sum((line["fired"] - line["ms"] / 1000 - line["planned"]) * 1000 for line in raw) / len(raw)
    agg_s, agg_p = final[("service", "", "Aggregated")], final[("planned", "", "Aggregated")]
    assert late_ms > 0
    assert agg_p["avg_ms"] - agg_s["avg_ms"] >= late_ms - 0.01


def test_the_report_gives_service_and_planned_start_times_and_the_difference(late_run):
    md = (late_run.folder / "late_locustfile-results.md").read_text()
    assert "## Response time from the planned start" in md
    final = final_rows(late_run)
    agg_s, agg_p = final[("service", "", "Aggregated")], final[("planned", "", "Aggregated")]
    table = md.split("## Response time from the planned start", 1)[1]
    assert f"|  | Aggregated | {agg_p['requests']:,} | " in table
    findings = md.split("## Findings", 1)[1].split("\n## ", 1)[0]
    assert f"p95 {agg_p['p95_ms']:,.0f} ms" in findings and f"p95 service time (from sending) of " \
        f"{agg_s['p95_ms']:,.0f} ms" in findings
    assert "coordinated omission" in findings


def test_a_distributed_run_sends_planned_start_latency_to_the_master(tmp_path):
    port = free_port()
    worker = start_locust(["-f", LOCUSTFILE, "--worker", "--master-port", str(port), "--no-monitor"],
                          stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=False)
    try:
        done = run_locust(["-f", LOCUSTFILE, "--master", "--master-bind-port", str(port), "--expect-workers", "1",
                           "--headless", "-u", "4", "-r", "100", "-t", "3s", "--no-monitor"],
                          env={"LOCUST_RESULTS_DIR": str(tmp_path)})
    finally:
        worker.terminate()
        worker.wait(timeout=30)
    assert done.returncode == 0, log_of(done.stderr)
    body = json.loads((tmp_path / "stats.json").read_text())
    service, planned = body["requests"][-1], body["from_planned_start"][-1]
    assert service["name"] == planned["name"] == "Aggregated"
    assert planned["requests"] == service["requests"] > 0
    assert planned["p95_ms"] >= service["p95_ms"]



def test_the_percentile_of_counted_values_is_the_percentile_of_the_values():
    import random
    from collections import Counter

    from plumbing.percentile import percentile, percentile_of_counts

    rng = random.Random(7)
    for n in (1, 2, 99, 100, 101, 5000):
        values = [rng.randrange(0, 300) for _ in range(n)]
        for p in (0.0, 0.5, 0.95, 0.99, 1.0):
            assert percentile_of_counts(Counter(values), p) == percentile(sorted(values), p), (n, p)
    assert percentile_of_counts({}, 0.5) == 0.0
