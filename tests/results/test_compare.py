"""`python -m loadtesting.compare`: two runs of one endpoint, one of it slowed by a known delay, and the
self-contained HTML report those runs leave beside their markdown."""

from __future__ import annotations

import base64
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from loadtesting import compare_data, compare_stats
from stack import free_port
from tests.helpers import REPO, run_locust, start_locust, wait_for
from tests.results.conftest import _accepts

SERVICE_MS = 100  # the endpoint's own time per request: well above a starved generator's jitter
# Seconds of each run's start and end left out where the size of a change is measured: three Locust
# processes starting (and stopping) at once on a busy machine slow those requests by hundreds of ms.
SKIP = ("4", "2")
DELAY_MS = 500  # what the slowed endpoint adds: well above a busy machine's noise at p95 (~100 ms)
LOCUSTFILE = str(Path(__file__).with_name("paced_locustfile.py"))


@dataclass
class Runs:
    results: Path
    same: tuple[str, str]  # two runs against the same endpoint
    slowed: str  # a run against the endpoint slowed by DELAY_MS, at the same time as `same`
    reported: str  # a later run of the slowed endpoint, reported with --baseline same[0]
    reported_output: str
    clickhouse_url: str


def _endpoint(service_ms: int):
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "targets.capped.server", "--port", str(port),
                             "--max-concurrent", "1000", "--service-ms", str(service_ms)], cwd=REPO,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_for(lambda: _accepts(port), timeout=30, what="capped endpoint")
    return proc, f"http://127.0.0.1:{port}"


def _start(results: Path, host: str, clickhouse_url: str, *extra: str) -> subprocess.Popen:
    """`python -m loadtesting.run` of the capped endpoint, its output merged."""
    return start_locust([LOCUSTFILE, "--results", str(results), "-H", host,
                         "--users", "30", "--spawn-rate", "100", "--run-time", "20s", "--monitor-interval", "1",
                         "--clickhouse-url", clickhouse_url, "--no-sar", "--spill-dir", str(results / "spill"), *extra],
                        via=["loadtesting.run"])


def _finish(proc: subprocess.Popen) -> tuple[str, str]:
    out, _ = proc.communicate(timeout=180)
    assert proc.returncode == 0, out[-3000:]
    return re.search(r"^run (\S+):", out, re.M).group(1), out


@pytest.fixture(scope="module")
def runs(clickhouse, tmp_path_factory) -> Runs:
    """20 s runs of 30 users at 1 request/s each (on a busy machine a 15 s --run-time gave 8 s of
    requests: Locust logged its limit reached 8 s after setting it). Three at once, so they share the machine's load
    (the bootstrap measures the noise within a run, not a machine that is busier in one run than in
    the next: docs/compare.md): two of one endpoint, one of it slowed; without their reports, whose
    charts would take the CPU from the runs still going. Then one more of the slowed endpoint whose
    automatic report compares it with the first run (--baseline)."""
    results = tmp_path_factory.mktemp("compare")
    fast, fast_url = _endpoint(SERVICE_MS)
    slow, slow_url = _endpoint(SERVICE_MS + DELAY_MS)
    try:
        procs = [_start(results, url, clickhouse.url, "--no-report") for url in (fast_url, fast_url, slow_url)]
        (a, _), (b, _), (c, _) = [_finish(p) for p in procs]
        reported, out = _finish(_start(results, slow_url, clickhouse.url, "--run-time", "10s", "--baseline", a))
    finally:
        for proc in (fast, slow):
            proc.terminate()
            proc.wait(timeout=10)
    return Runs(results, (a, b), c, reported, out, clickhouse.url)


def _compare(runs: Runs, base: str, cand: str, source: str = "clickhouse", skip: tuple[str, str] = ("0", "0")
             ) -> compare_stats.Comparison:
    return compare_stats.compare(*(compare_data.load_run(ref, runs.results, source, runs.clickhouse_url,
                                                         skip_first=float(skip[0]), skip_last=float(skip[1]))
                                   for ref in (base, cand)))


def _cli(runs: Runs, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "loadtesting.compare", *args, "--results", str(runs.results),
                           "--clickhouse-url", runs.clickhouse_url], cwd=REPO, capture_output=True, text=True,
                          timeout=120)


def _tested(c: compare_stats.Comparison) -> list[compare_stats.Delta]:
    return [d for d in [*c.key, *c.requests] if d.ci is not None]


# -- the comparison ---------------------------------------------------------------------------------
def test_a_run_compared_with_itself_has_every_delta_zero_and_no_significant_change(runs):
    c = _compare(runs, runs.same[0], runs.same[0])
    assert {d.figure.key for d in c.key} >= {"p50", "p95", "p99", "rps", "failures"}
    assert any(d.request == "GET /work" for d in c.requests)
    for d in [*c.key, *c.requests]:
        assert d.delta == 0, (d.figure.key, d.request, d.delta)
    tested = _tested(c)
    assert len(tested) >= 10
    assert {d.verdict for d in tested} == {compare_stats.SAME}


def test_the_percentiles_compared_are_the_reports_merged_histograms(runs):
    from loadtesting.report.data import load

    data = load(runs.same[0], runs.results, "clickhouse", runs.clickhouse_url)
    total = next(r for r in data.requests if r["name"] == "Aggregated")
    c = _compare(runs, runs.same[0], runs.same[1])
    for p in ("p50", "p95", "p99"):
        assert c.figure(p).base == total[f"{p}_ms"]


def test_two_runs_of_the_same_endpoint_have_no_worse_verdict(runs):
    c = _compare(runs, *runs.same)
    worse = [(d.figure.key, d.request, d.base, d.cand, d.ci) for d in _tested(c) if d.verdict == compare_stats.WORSE]
    assert not worse


def test_a_slowed_endpoint_is_worse_at_p95_by_about_its_delay(runs):
    c = _compare(runs, runs.same[0], runs.slowed, skip=SKIP)  # the steady part: see SKIP
    p95 = c.figure("p95")
    assert p95.verdict == compare_stats.WORSE
    assert 0.7 * DELAY_MS <= p95.delta <= 2 * DELAY_MS, p95.delta  # warm-up spikes add to the slow run's tail
    p50 = c.figure("p50")  # the middle of the distribution moves by the delay too, with less noise
    assert p50.verdict == compare_stats.WORSE and 0.7 * DELAY_MS <= p50.delta <= 1.5 * DELAY_MS, p50.delta
    assert c.figure("rps").verdict != compare_stats.WORSE  # paced users: the same rate, slower answers


def test_run_folders_compare_as_their_clickhouse_rows_do(runs):
    folders = [str(runs.results / r) for r in (runs.same[0], runs.slowed)]
    from_folders = _compare(runs, *folders, source="csv", skip=SKIP)
    assert from_folders.base.data.source == "csv"
    assert from_folders.figure("p95").verdict == compare_stats.WORSE
    assert from_folders.figure("p95").delta == _compare(runs, runs.same[0], runs.slowed, skip=SKIP).figure("p95").delta


# -- the command and its gate -----------------------------------------------------------------------
def test_the_gate_fails_with_exit_1_when_p95_is_worse_beyond_its_tolerance(runs):
    done = _cli(runs, runs.same[0], runs.slowed, "--fail-on", "p95:+10%,rps:-5%", "--skip-first", SKIP[0],
                "--skip-last", SKIP[1])
    assert done.returncode == 1, done.stderr
    assert "gate failed: p95:+10%" in done.stderr and "rps:-5%" not in done.stderr.splitlines()[-1]
    assert "| p95:+10% |" in done.stdout and "**failed**" in done.stdout


def test_the_gate_passes_with_exit_0_when_nothing_is_worse(runs):
    done = _cli(runs, runs.same[0], runs.same[0], "--fail-on", "p95:+10%,rps:-5%,failures:+1")
    assert done.returncode == 0, done.stderr
    assert "No figure is worse." in done.stdout


def test_a_tolerance_larger_than_the_slowdown_passes(runs):
    done = _cli(runs, runs.same[0], runs.slowed, "--fail-on", f"p95:+{100 * 3 * DELAY_MS // SERVICE_MS}%")
    assert done.returncode == 0, done.stdout + done.stderr


@pytest.mark.parametrize("spec, says", [
    ("p95:-10%", "p95 is worse when higher; expected p95:+10%"),
    ("rps:+5%", "requests/s is worse when lower; expected rps:-5%"),
    ("latency:+10%", "unknown figure 'latency'"),
    ("p95:ten", "expected FIGURE:+N% or FIGURE:+N"),
    ("backlog:+10%", "no significance test"),
])
def test_a_bad_gate_is_a_one_line_error_with_exit_2(spec, says):
    done = subprocess.run([sys.executable, "-m", "loadtesting.compare", "a", "b", "--fail-on", spec], cwd=REPO,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 2
    assert done.stderr.startswith("error: --fail-on") and says in done.stderr, done.stderr
    assert len(done.stderr.strip().splitlines()) == 1


def test_a_negative_skip_is_a_one_line_error_with_exit_2():
    done = subprocess.run([sys.executable, "-m", "loadtesting.compare", "a", "b", "--skip-first", "-3"], cwd=REPO,
                          capture_output=True, text=True, timeout=60)
    assert (done.returncode, done.stderr) == (2, "error: --skip-first -3: expected seconds >= 0\n")


def test_an_unknown_run_is_a_one_line_error_with_exit_2(runs):
    done = _cli(runs, "20200101-000000-00000000", runs.same[0])
    assert done.returncode == 2
    assert done.stderr.startswith("error: ") and "20200101-000000-00000000" in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1


def test_out_writes_the_comparison_as_markdown_and_self_contained_html(runs, tmp_path):
    done = _cli(runs, runs.same[0], runs.slowed, "--out", str(tmp_path))
    assert done.returncode == 0, done.stderr
    md = tmp_path / f"compare-{runs.same[0]}-{runs.slowed}.md"
    assert md.read_text().startswith(done.stdout)
    page = md.with_suffix(".html").read_text()
    assert "<h2>Key figures</h2>" in page and "<strong>worse</strong>" in page
    png = md.with_suffix(".png").read_bytes()
    assert f'src="data:image/png;base64,{base64.b64encode(png).decode()}"' in page  # p95 per interval, both runs


# -- the run's report: --baseline and the HTML twin ------------------------------------------------
def test_a_run_with_a_baseline_has_the_comparison_in_its_report(runs):
    md = (runs.results / runs.reported / "paced_locustfile-results.md").read_text()
    section = md.split(f"## Comparison with baseline run {runs.same[0]}", 1)[1]
    p50 = next(line for line in section.splitlines() if line.startswith("| p50 (ms) |"))  # whole runs: their
    assert p50.endswith("| **worse** |"), p50  # start and stop weigh on p95, not on the median
    html = (runs.results / runs.reported / "paced_locustfile-results.html").read_text()
    assert f"<h2>Comparison with baseline run {runs.same[0]}</h2>" in html


def test_a_report_rewritten_with_a_baseline_has_the_comparison(runs, tmp_path):
    done = subprocess.run([sys.executable, "-m", "loadtesting.report", runs.same[1], "--results", str(runs.results),
                           "--baseline", runs.same[0], "--out", str(tmp_path)], cwd=REPO, capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    md = (tmp_path / "paced_locustfile-results.md").read_text()
    assert f"## Comparison with baseline run {runs.same[0]}" in md and "| p95 (ms) |" in md
    assert (tmp_path / "paced_locustfile-results.html").exists()


def test_a_wrong_baseline_stops_the_run_before_it_starts(runs, tmp_path):
    done = run_locust([LOCUSTFILE, "--results", str(tmp_path), "--baseline", "20200101-000000-00000000",
                       "--clickhouse-url", runs.clickhouse_url], via=["loadtesting.run"], timeout=60)
    assert done.returncode == 2
    assert done.stderr.startswith("error: --baseline 20200101-000000-00000000")
    assert not list(tmp_path.iterdir())  # no run folder: nothing ran


def test_the_html_report_holds_every_section_finding_and_chart_and_loads_nothing(runs):
    folder = runs.results / runs.reported
    md = (folder / "paced_locustfile-results.md").read_text()
    page = (folder / "paced_locustfile-results.html").read_text()
    for heading in re.findall(r"^## (.+)$", md, re.M):
        assert f"<h2>{heading}</h2>" in page, heading
    findings = md.split("## Findings", 1)[1].split("\n## ", 1)[0].strip().split("\n\n")
    text = re.sub(r"<[^>]+>", "", page).replace("&quot;", '"').replace("&amp;", "&")
    for para in findings:
        plain = para.replace("**", "").replace("`", "")
        assert plain in text, plain
    charts = sorted((folder / "charts").glob("*.png"))
    assert charts
    for chart in charts:
        assert f'src="data:image/png;base64,{base64.b64encode(chart.read_bytes()).decode()}"' in page, chart.name
    refs = re.findall(r'(?:src|href)\s*=\s*"([^"]*)"', page)
    assert [r for r in refs if not r.startswith("data:")] == ["report.html", "paced_locustfile-results.md"]
    assert not re.search(r"https?://", " ".join(refs)) and "<script" not in page and "@import" not in page


def test_the_html_keeps_recorded_text_as_text_and_fetches_no_image(tmp_path):
    from loadtesting.report import html

    md = ("# t\n\n| error |\n|---|\n| <script>alert(1)</script> <http://example.com/x> |\n\n"
          "![remote](http://example.com/a.png) ![gone](charts/missing.png)\n")
    page = html.to_html(md, tmp_path, "t")
    assert "<script>alert" not in page and "&lt;script&gt;" in page
    assert "example.com" not in re.findall(r'(?:src|href)="([^"]*)"', page).__str__()
    assert "[remote]" in page and "[gone]" in page
