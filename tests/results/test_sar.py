"""sar capture during a run, read back per phase; phases marked by hand."""

from __future__ import annotations

import subprocess
import sys

from loadtesting import phases, sar
from tests.helpers import REPO


def test_a_run_records_a_sar_file_that_parses(capacity_run):
    path = capacity_run.folder / "sar.data"
    assert path.stat().st_size > 0
    rows = sar.read(path)
    assert {"cpu", "memory", "disk", "network"} <= set(rows)
    times = [r.time for r in rows["cpu"] if r.device == "-1"]
    cap = capacity_run.json("capacity.json")
    # One record a second, covering the whole search.
    assert times[0] <= cap["steps"][0]["start"] and times[-1] >= cap["steps"][-1]["end"] - 1
    assert all(b - a <= 2 for a, b in zip(times, times[1:], strict=False))


def test_each_phase_window_has_its_own_sar_figures(capacity_run):
    rows = sar.read(capacity_run.folder / "sar.data")
    for p in phases.read(capacity_run.folder):
        s = sar.summarize(rows, p.start, p.end)
        assert s["samples"] >= 2, (p.name, s)
        assert 0 <= s["cpu_idle"] <= 100 and s["loopback_kBps"] > 0  # the load went over loopback


def test_phases_marked_by_hand_pair_up(tmp_path):
    def cli(*args):
        return subprocess.run([sys.executable, "-m", "loadtesting.phases", str(tmp_path), *args], cwd=REPO,
                              capture_output=True, text=True, timeout=30)

    assert cli("start", "peak").returncode == 0
    assert cli("end", "peak").returncode == 0
    assert cli("start", "cool-down").returncode == 0
    marked = phases.read(tmp_path)
    assert [(p.name, p.end is not None) for p in marked] == [("peak", True), ("cool-down", False)]
    assert "peak" in cli("list").stdout


def test_a_bad_phase_name_is_a_one_line_error(tmp_path):
    done = subprocess.run([sys.executable, "-m", "loadtesting.phases", str(tmp_path), "start", "no spaces"],
                          cwd=REPO, capture_output=True, text=True, timeout=30)
    assert done.returncode == 2
    assert done.stderr.strip() == ("error: phase name 'no spaces': expected 1-64 letters, digits, '.', '_' or '-'")


# -- which machine the sar figures are: the load generator's, or the system under test's --------------
def _sadf(host: str, idle: float, seconds: int = 5) -> dict:
    """sar rows as `sadf -d` prints them, of a machine `host` that was (100 - idle)% busy."""
    lines = ["# hostname;interval;timestamp;CPU;%user;%nice;%system;%iowait;%steal;%idle"]
    lines += [f"{host};1;2026-12-06 23:04:{20 + i:02d} UTC;-1;{(100 - idle) * 0.8:.2f};0.00;{(100 - idle) * 0.2:.2f};"
              f"0.00;0.00;{idle:.2f}" for i in range(seconds)]
    lines += ["# hostname;interval;timestamp;kbmemfree;kbavail;kbmemused;%memused"]
    lines += [f"{host};1;2026-12-06 23:04:{20 + i:02d} UTC;1000;2000;3000;42.00" for i in range(seconds)]
    return sar.parse_sadf("\n".join(lines))


def _findings(data) -> str:
    from loadtesting.report.findings import findings

    return "\n\n".join(findings(data, {}))


def test_a_busy_generator_against_a_remote_host_is_the_generators_limit_not_the_systems():
    from loadtesting.report.data import RunData

    data = RunData(run_id="r", source="csv", kind="http", sar=_sadf("loadgen", idle=5),
                   meta={"options": {"host": "https://lampi.example.com"}})
    text = _findings(data)
    assert "**The load generator was the limit**: during the run its machine (loadgen) was 95% busy" in text
    assert "No sar of the system under test was given" in text and "--sar-file" in text
    assert "bottleneck" not in text  # nothing is said of the remote machine's CPU


def test_the_systems_sar_is_reported_beside_the_generators_labelled_by_host(tmp_path):
    from loadtesting.report.data import RunData
    from loadtesting.report.markdown import render

    data = RunData(run_id="r", source="csv", kind="http", sar=_sadf("loadgen", idle=60),
                   sut_sar={"lampi-web1": _sadf("lampi-web1", idle=8)},
                   meta={"options": {"host": "https://lampi.example.com"}})
    text = _findings(data)
    assert "The load generator's machine (loadgen) had headroom during the run" in text
    assert "On the system under test's host lampi-web1, during the run the CPU was 92% busy" in text
    assert "its CPU was the bottleneck" in text
    md = render(data, tmp_path).read_text()
    assert "## System activity (sar), whole run: load generator loadgen" in md
    assert "## System activity (sar), whole run: system under test lampi-web1" in md


def test_on_one_machine_the_cpu_finding_speaks_of_both():
    from loadtesting.report.data import RunData

    data = RunData(run_id="r", source="csv", kind="http", sar=_sadf("vm", idle=10),
                   meta={"command": ["locust", "-H", "http://127.0.0.1:8080"]})
    text = _findings(data)
    assert "The system under test ran on the same machine" in text
    assert "The system under test ran on the load generator's machine: during the run its CPU was 90% busy" in text


def test_a_sar_file_given_to_the_report_is_added_not_swapped_for_the_generators(tmp_path):
    from loadtesting.report.data import load

    folder = tmp_path / "r"
    folder.mkdir()
    for path in (folder / "sar.data", tmp_path / "sut.sar"):
        subprocess.run([sar.sadc_path(), "-S", "XALL", "1", "2", str(path)], check=True, timeout=30)
    (folder / "run.json").write_text("{}")
    (folder / "stats.json").write_text('{"requests": [], "failures": []}')
    data = load("r", tmp_path, source="csv", sar_file=[tmp_path / "sut.sar"])
    host = sar.hostname(data.sar)
    assert host and data.sar["cpu"]  # the generator's own, from the run folder
    assert list(data.sut_sar) == [host]  # beside it, labelled by the host that recorded it (here the same)


def test_lag_in_seconds_and_backlogs_in_events_get_an_axis_each():
    from loadtesting.report.charts import lag_panels

    lag = {"backlog (events)": [(1.0, 5.0)], "redis_bus lag": [(1.0, 4.0)], "clickhouse lag_seconds": [(1.0, 2.5)]}
    assert lag_panels(lag) == {"events": {"backlog (events)": [(1.0, 5.0)], "redis_bus lag": [(1.0, 4.0)]},
                               "seconds": {"clickhouse lag_seconds": [(1.0, 2.5)]}}
