"""Markdown reports with charts, from ClickHouse and from the run folder's CSV files."""

from __future__ import annotations

import csv
import struct
import subprocess
import sys

import pytest

from loadtesting.report.data import QUERIES
from monitors import schema
from tests.helpers import REPO
from tests.monitor.conftest import chdb_render


def report(run, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "loadtesting.report", run.run_id, "--results", str(run.results),
                           *args], cwd=REPO, capture_output=True, text=True, timeout=120)


def png_size(path) -> tuple[int, int]:
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and data[12:16] == b"IHDR", path
    return struct.unpack(">II", data[16:24])


def findings(md: str) -> list[str]:
    section = md.split("## Findings", 1)[1].split("\n## ", 1)[0]
    return [p for p in section.strip().split("\n\n") if p.strip()]


@pytest.fixture(scope="module")
def csv_report(capacity_run):
    done = report(capacity_run, "--source", "csv")
    assert done.returncode == 0, done.stderr
    return (capacity_run.folder / "capped_locustfile-results.md").read_text()


def test_report_from_csv_states_the_capacity_found(capacity_run, csv_report):
    cap = capacity_run.json("capacity.json")
    assert f"Maximum sustainable load: **{cap['max_sustainable_users']} users**" in csv_report
    assert "| Data source | run folder CSV files |" in csv_report
    assert len(findings(csv_report)) >= 2


def test_report_has_per_phase_locust_and_sar_tables(csv_report):
    for name in ("minimal-load", "max-sustainable-load", "failure-load"):
        assert csv_report.count(f"| {name} |") == 2, name  # the phase table and the sar table
    assert "CPU user %" in csv_report and "net rx kB/s" in csv_report


def test_report_names_the_failure_that_appeared(csv_report):
    assert "LocustBadStatusCode(code=503)" in csv_report


def test_charts_are_valid_pngs_linked_from_the_report(capacity_run, csv_report):
    for name in ("load", "capacity"):
        path = capacity_run.folder / "charts" / f"{name}.png"
        width, height = png_size(path)
        assert width >= 600 and height >= 200
        assert f"(charts/{name}.png)" in csv_report


def test_the_html_twin_of_a_capacity_report_embeds_its_charts_and_tables(capacity_run, csv_report):
    import base64

    page = (capacity_run.folder / "capped_locustfile-results.html").read_text()
    for heading in ("Capacity", "Phases", "Failures", "Charts"):
        assert f"<h2>{heading}</h2>" in page, heading
    for name in ("load", "capacity"):
        png = (capacity_run.folder / "charts" / f"{name}.png").read_bytes()
        assert f'src="data:image/png;base64,{base64.b64encode(png).decode()}"' in page
    assert "<td>LocustBadStatusCode(code=503)</td>" in page
    assert page.count("<table>") == sum(line.startswith("|---") for line in csv_report.splitlines())


def test_report_from_clickhouse_has_the_same_request_count_as_the_csv(capacity_run):
    done = report(capacity_run, "--source", "clickhouse", "--clickhouse-url",
                  capacity_run.clickhouse_url, "--out", str(capacity_run.folder / "from-ch"))
    assert done.returncode == 0, done.stderr
    md = (capacity_run.folder / "from-ch" / "capped_locustfile-results.md").read_text()
    assert "| Data source | ClickHouse (monitor tables) |" in md
    final = {r["name"]: r for r in capacity_run.json("stats.json")["requests"]}["/work"]["requests"]
    # Every interval the monitor stored adds up to Locust's own final count: no measurement lost.
    assert f"| GET | /work | {final:,} |" in md
    assert "Maximum sustainable load" in md and len(findings(md)) >= 2


def test_final_stats_hold_at_least_what_locusts_csv_holds(capacity_run):
    # Locust rewrites its CSV once a second and not at exit; stats.json is written at exit.
    final = {r["name"]: r for r in capacity_run.json("stats.json")["requests"]}
    with open(capacity_run.folder / "locust_stats.csv", newline="") as f:
        csv_rows = {r["Name"]: r for r in csv.DictReader(f)}
    assert final["/work"]["requests"] >= int(csv_rows["/work"]["Request Count"]) > 0
    assert final["Aggregated"]["requests"] == final["/work"]["requests"]


def test_an_unknown_run_is_a_one_line_error(capacity_run):
    done = subprocess.run([sys.executable, "-m", "loadtesting.report", "no-such-run", "--results",
                           str(capacity_run.results), "--source", "csv"], cwd=REPO, capture_output=True, text=True)
    assert done.returncode == 2
    assert done.stderr.strip().startswith("error: run 'no-such-run': no folder") and "\n" not in done.stderr.strip()


@pytest.mark.parametrize("name", sorted(QUERIES))
def test_report_queries_run_on_current_clickhouse(chdb_session, name):
    for statement in schema.statements("event_sink"):
        chdb_session.query(statement)
    chdb_session.query(chdb_render(QUERIES[name].format(db="event_sink"), {"run": "no-run", "t0": 0, "t1": 1}))


def test_a_command_line_is_printed_and_stored_without_its_secrets():
    from plumbing.redaction import redact_args

    assert redact_args(["--clickhouse-url", "clickhouse://lt:s3cret@db:9000/default", "--capacity-search",
                        "--event-bus-redis-url=redis://:s3cret@cache:6379/0", "--ralph-password", "s3cret",
                        "--mqtt-password-file", "/run/secrets/mqtt"]) == [
        "--clickhouse-url", "clickhouse://lt:***@db:9000/default", "--capacity-search",
        "--event-bus-redis-url=redis://:***@cache:6379/0", "--ralph-password", "***",
        "--mqtt-password-file", "/run/secrets/mqtt"]


def _row(rtype: str, name: str, requests: int, failures: int = 0) -> dict:
    return {"type": rtype, "name": name, "requests": requests, "failures": failures, "rps": requests / 10,
            "avg_ms": 5.0, "p50_ms": 4.0, "p95_ms": 9.0, "p99_ms": 11.0, "max_ms": 12.0}


def test_a_tracking_report_says_how_many_events_were_sent_and_found():
    from loadtesting.report.data import RunData
    from loadtesting.report.findings import findings as report_findings

    data = RunData(run_id="r", source="csv", kind="tracking",
                   requests=[_row("EVENT", "play_video", 60), _row("EVENT", "problem_check", 40, failures=2),
                             _row("E2E", "tracking event → xAPI in ClickHouse", 95), _row("", "Aggregated", 195, 2)])
    first = report_findings(data, {})[0]
    assert "sent 100 tracking events" in first and "; 2 failed to send" in first
    assert "95 of them were found in ClickHouse" in first and "3 never arrived" in first


def test_a_tracking_report_gives_the_achieved_sending_rate_against_its_target():
    from loadtesting.report.data import RunData
    from loadtesting.report.findings import findings as report_findings

    data = RunData(run_id="r", source="clickhouse", kind="tracking", requests=[_row("EVENT", "play_video", 100)],
                   meta={"extra": {"events_per_second_achieved": 480.5}, "options": {"events_per_second": 500}})
    assert "sent 100 tracking events at 480.5 events/s (target 500)" in report_findings(data, {})[0]


def test_the_target_names_the_pipeline_entry_point_without_credentials():
    from loadtesting.report.markdown import target

    opts = {"pipeline_backend": "redis_bus", "event_bus_redis_url": "redis://app:s3cret@redis.example:6380/0"}
    assert target("tracking", {}, opts) == "redis_bus pipeline at redis.example:6380"
    lrs = {"pipeline_backend": "ralph", "ralph_url": "https://lrs.example/ralph"}
    assert target("tracking", {}, lrs) == "ralph pipeline at lrs.example"
    assert target("kafka", {}, {"kafka_topic": "in", "kafka_brokers": "k1:9092,k2:9092"}) == "topic in on k1:9092,k2:9092"
    assert "s3cret" not in target("http", {"host": "http://u:s3cret@site:8000"}, {})


def test_an_open_model_report_says_the_generator_was_the_limit_when_it_dropped_iterations():
    from loadtesting.report.data import RunData
    from loadtesting.report.findings import findings as report_findings

    om = {"planned": 1000, "started": 900, "dropped": 100, "duration_s": 2.0, "target_rate": 500.0,
          "achieved_rate": 450.0}
    data = RunData(run_id="r", source="clickhouse", kind="tracking",
                   requests=[_row("EVENT", "play_video", 900), _row("DROPPED", "tracking events", 100)],
                   meta={"extra": {"open_model": om}})
    text = " ".join(report_findings(data, {}))
    assert "1,000 iterations were planned over 2.0 s (target 500.0/s) and 900 started (450.0/s)" in text
    assert "100 iterations were dropped" in text and "the generator was the limit" in text


def test_an_open_model_report_without_drops_says_so():
    from loadtesting.report.data import RunData
    from loadtesting.report.findings import findings as report_findings

    om = {"planned": 600, "started": 600, "dropped": 0, "duration_s": 3.0, "target_rate": 200.0,
          "achieved_rate": 200.0}
    data = RunData(run_id="r", source="clickhouse", kind="tracking", requests=[_row("EVENT", "play_video", 600)],
                   meta={"extra": {"open_model": om}})
    assert any(p.endswith("600 started (200.0/s); none was dropped.") for p in report_findings(data, {}))


def _e2e_split(after: int, after_p50: float, during: int, during_p99: float) -> dict:
    return {"after_load": {"events": after, "p50_ms": after_p50, "max_ms": after_p50 + 100},
            "while_loading": {"events": during, "p95_ms": during_p99 * 0.8, "p99_ms": during_p99}}


def test_a_tail_made_by_the_last_events_after_the_load_stopped_is_named():
    from loadtesting.report.data import RunData
    from loadtesting.report.findings import findings as report_findings

    data = RunData(run_id="r", source="clickhouse", kind="tracking", requests=[_row("EVENT", "play_video", 5000)],
                   meta={"extra": {"e2e": _e2e_split(97, 5100.0, 4903, 900.0)}})
    text = " ".join(report_findings(data, {}))
    assert ("97 events were stored after the load stopped, with an end-to-end latency of p50 5,100 ms (max "
            "5,200 ms); the 4,903 stored while it ran had p95 720 ms and p99 900 ms.") in text
    assert "The run's tail is these last events" in text and "partial batch" in text


def test_events_stored_after_the_load_because_the_pipeline_fell_behind_are_not_called_a_flush_tail():
    from loadtesting.report.data import RunData
    from loadtesting.report.findings import findings as report_findings

    behind = RunData(run_id="r", source="clickhouse", kind="tracking", requests=[_row("EVENT", "play_video", 5000)],
                     meta={"extra": {"e2e": _e2e_split(2000, 30000.0, 3000, 25000.0)}})
    text = " ".join(report_findings(behind, {}))
    assert "2,000 events were stored after the load stopped" in text
    assert "The run's tail is these last events" not in text


def _interval(rtype: str, name: str, t: float, requests: int, ms: int) -> dict:
    return {"run_id": "r", "timestamp": t, "time_ms": int(t * 1000), "interval_s": 1.0, "request_type": rtype,
            "name": name, "requests": requests, "failures": 0, "rps": requests, "fail_rps": 0.0, "avg_ms": ms,
            "p50_ms": ms, "p95_ms": ms, "p99_ms": ms, "max_ms": ms, "users": 5, "timing": "service",
            "buckets": [ms], "counts": [requests]}


def test_a_report_keeps_end_to_end_latency_apart_from_the_generators_requests(tmp_path):
    import json

    from loadtesting.report.data import load
    from loadtesting.report.markdown import render

    folder = tmp_path / "r"
    folder.mkdir()
    (folder / "run.json").write_text(json.dumps({"kind": "tracking"}))
    rows = [row for t in (100.0, 101.0, 102.0) for row in (
        _interval("EVENT", "play_video", t, 50, 4), _interval("", "Aggregated", t, 50, 4),
        _interval("E2E", "tracking event → xAPI in ClickHouse", t, 50, 900))]
    (folder / "request_stats.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    final = [_row("EVENT", "play_video", 150), _row("E2E", "tracking event → xAPI in ClickHouse", 150),
             _row("", "Aggregated", 150)]
    (folder / "stats.json").write_text(json.dumps({"requests": final, "failures": []}))
    data = load("r", tmp_path, source="csv")
    assert data.e2e == {"tracking event → xAPI in ClickHouse": [(100.0, 900), (101.0, 900), (102.0, 900)]}
    assert [p["p95"] for p in data.timeline] == [4, 4, 4]  # load.png's p95: the generator's requests
    md = render(data, folder).read_text()
    assert "**E2E** rows are not requests of the generator" in md and "`--check-e2e-p95`" in md
    assert "![e2e](charts/e2e.png)" in md and png_size(folder / "charts" / "e2e.png")[0] > 0
