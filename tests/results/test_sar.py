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
