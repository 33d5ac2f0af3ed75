"""`python -m loadtesting.run` off the demo path: started elsewhere, refused at start, ramping too long."""

from __future__ import annotations

import re
import shutil
import uuid
from pathlib import Path

import pytest

from loadtesting.run import ramp_warning
from plumbing import settings
from stack import free_port
from tests.helpers import REPO, run_locust


@pytest.fixture(scope="module")
def refused_run(tmp_path_factory):
    """A run started outside the checkout with a relative --results, against a host nobody serves."""
    cwd = tmp_path_factory.mktemp("elsewhere")
    relative = f"results-{uuid.uuid4().hex[:8]}"
    try:
        done = run_locust(["http", "--results", relative, "--host", f"http://127.0.0.1:{free_port()}", "-u", "1",
                           "-r", "1", "-t", "2s", "--no-monitor", "--no-sar"], via=["loadtesting.run"], cwd=cwd,
                          timeout=180)
        run_id = re.search(r"^run (\S+):", done.stdout, re.M).group(1)
        yield done, cwd / relative / run_id, REPO / relative
    finally:
        shutil.rmtree(REPO / relative, ignore_errors=True)  # the former code wrote Locust's files there


def test_a_relative_results_folder_holds_every_file_of_the_run(refused_run):
    _done, folder, in_checkout = refused_run
    assert (folder / "run.json").exists() and (folder / "locust_stats.csv").exists(), sorted(folder.iterdir())
    assert not in_checkout.exists()  # not split between the caller's folder and the checkout


def test_a_run_refused_at_start_reports_why(refused_run):
    done, folder, _ = refused_run
    assert done.returncode == 1
    findings = (folder / "http-results.md").read_text().split("## Findings", 1)[1].split("\n## ", 1)[0]
    assert "The run was refused at start and measured nothing (exit code 1): `error: --host http://127.0.0.1:" \
           in findings and "cannot connect" in findings
    assert "Too little was recorded" not in findings


def test_a_ramp_that_takes_most_of_the_run_is_said():
    warning = ramp_warning(500, 10, 60)  # make mqtt-test's devices at the HTTP targets' spawn rate
    assert warning and "takes 50 s of the 60 s run" in warning
    assert ramp_warning(500, 100, 60) is None and ramp_warning(500, 10, None) is None


def test_the_suites_own_files_do_not_depend_on_the_current_folder():
    from targets.pipeline.__main__ import parser

    for setting in (settings.KAFKA_DATA_FILE, settings.VECTOR_LOG_FILE):
        assert Path(setting.default).is_absolute() and Path(setting.default).is_relative_to(REPO), setting
    assert Path(settings.KAFKA_DATA_FILE.default).is_file()
    # The generator's Vector log and the reference pipeline's tailer agree wherever each starts.
    assert parser().parse_args(["vector"]).log_file == Path(settings.VECTOR_LOG_FILE.default)
