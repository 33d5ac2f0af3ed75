"""The report's Capacity section and chart for a rate search."""

from __future__ import annotations

from dataclasses import asdict

from loadtesting import rate_capacity as rc
from loadtesting.report.data import RunData
from loadtesting.report.markdown import render


def step(target: float, verdict: str, stored: float, slope: float, why: str = "") -> dict:
    s = rc.RateStep(target=target, start=0, end=30, offered_per_s=target, stored_per_s=stored, e2e_p95_ms=900.0,
                    backlog={"sent − stored": {"start": 0, "end": 0, "slope": slope, "ci": 1.0, "samples": 30,
                                               "verdict": rc.GROWING if slope > 5 else rc.FLAT}},
                    verdict=verdict, why=why)
    return asdict(s)


def capacity() -> dict:
    why = "sent − stored backlog growing (+40.0 ± 1.0/s over 30 samples)"
    return {"unit": "events", "sustained_per_second": 100.0, "sustained_events_per_second": 100.0,
            "e2e_p95_ms_at_sustained": 900.0, "first_failing": {"target": 200.0, "verdict": "fail", "why": why},
            "generator_limited_at": None, "resolution": 10.0,
            "bottleneck": {"stage": rc.CLICKHOUSE, "evidence": "bus backlog flat", "step": 200.0},
            "rule": {"backlog_tolerance": 0.05, "slo_e2e_p95_ms": 30000, "step_time_s": 30},
            "steps": [step(50, rc.PASS, 50, 0.1), step(100, rc.PASS, 100, 0.2), step(200, rc.FAIL, 160, 40, why)]}


def test_a_rate_search_report_states_the_sustained_rate_the_failure_and_the_bottleneck(tmp_path):
    path = render(RunData(run_id="r", source="csv", kind="tracking", capacity=capacity()), tmp_path)
    md = path.read_text()
    assert "Sustained: **100 events/s**" in md
    assert "The first failing step was 200 events/s: sent − stored backlog growing" in md
    assert "Bottleneck: **clickhouse insert path**" in md
    assert "| 200 | 200 | 160 | +40.0 ± 1.0 |" in md


def test_a_rate_search_chart_plots_offered_stored_and_backlog_per_step(tmp_path):
    render(RunData(run_id="r", source="csv", kind="tracking", capacity=capacity()), tmp_path)
    png = tmp_path / "charts" / "capacity.png"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_a_stopped_search_is_reported_as_a_partial_result(tmp_path):
    cap = {**capacity(), "first_failing": None, "bottleneck": None, "stopped": True, "stopped_during": 200.0}
    cap["steps"] = cap["steps"][:2]
    md = render(RunData(run_id="r", source="csv", kind="tracking", capacity=cap), tmp_path).read_text()
    assert "**The search was stopped before its end** (while measuring 200 events/s): a partial result. " \
           "Sustained at least **100 events/s**." in md
    assert "No step failed up to --capacity-max-rate" not in md


def test_a_search_ended_by_its_time_limit_does_not_claim_that_nothing_failed_up_to_the_ceiling(tmp_path):
    cap = {**capacity(), "first_failing": None, "bottleneck": None, "stopped_by_time_limit": 400.0,
           "time_limit_s": 600}
    cap["steps"] = cap["steps"][:2]
    md = render(RunData(run_id="r", source="csv", kind="tracking", capacity=cap), tmp_path).read_text()
    assert "Stopped by --capacity-time-limit (600 s) before trying 400 events/s." in md
    assert "No step failed up to --capacity-max-rate" not in md
