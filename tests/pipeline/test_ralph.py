"""--pipeline-backend ralph: xAPI statement batches POSTed to a real Ralph LRS (fs backend).

Ralph's fs backend stores one write per file and refuses the next (it creates, never appends), so
each test starts from an empty data folder; the refusal is a real LRS error the last test uses.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from plumbing.locust_csv import read_locust_stats
from tests.helpers import REPO, log_of, run_locust

LOCUSTFILE = str(REPO / "locustfiles" / "tracking.py")


@pytest.fixture
def ralph(stack):
    endpoint = stack.start("ralph")["ralph"]
    for f in Path(endpoint.extra["data_dir"]).glob("*"):
        f.unlink()
    return endpoint


def send(ralph, tmp_path, *extra: str, password_file: str | None = None):
    args = ["-f", LOCUSTFILE, "--headless", "-u", "5", "-r", "5", "-t", "60s", "--pipeline-backend", "ralph",
            "--ralph-url", ralph.url, "--ralph-password-file", password_file or ralph.extra["password_file"],
            "--no-e2e", "--no-monitor", "--no-sar", "--sleep-time", "0", "--event-mix", "realistic",
            "--csv", str(tmp_path / "run"), *extra]
    return run_locust(args, timeout=120)


def stored(ralph) -> list[dict]:
    files = list(Path(ralph.extra["data_dir"]).glob("*.jsonl"))
    return [json.loads(line) for f in files for line in f.read_text().splitlines() if line.strip()]


def test_a_batch_of_events_arrives_as_xapi_statements(ralph, tmp_path):
    done = send(ralph, tmp_path, "--num-events", "50", "--ralph-batch-size", "100", "--ralph-batch-interval", "0.5")
    assert done.returncode == 0, log_of(done.stderr)
    stats = read_locust_stats(tmp_path / "run")
    post = stats["POST /xAPI/statements"]
    assert (int(post["Request Count"]), int(post["Failure Count"])) == (1, 0)  # the timer sent the partial batch
    statements = stored(ralph)
    assert len(statements) == 50 and len({s["id"] for s in statements}) == 50
    assert all(s["verb"]["id"].startswith("http") and s["actor"]["account"]["name"] for s in statements)


def test_an_lrs_error_fails_exactly_the_events_of_its_batch(ralph, tmp_path):
    done = send(ralph, tmp_path, "--num-events", "30", "--ralph-batch-size", "10", "--ralph-concurrency", "1")
    assert "Traceback" not in done.stderr
    stats = read_locust_stats(tmp_path / "run")
    post = stats["POST /xAPI/statements"]
    assert (int(post["Request Count"]), int(post["Failure Count"])) == (3, 2)  # Ralph's fs backend refuses writes 2, 3
    events = [r for r in stats.values() if r["Type"] == "EVENT"]
    assert sum(int(r["Request Count"]) for r in events) == 30
    assert sum(int(r["Failure Count"]) for r in events) == 20
    assert len(stored(ralph)) == 10
    assert done.returncode == 1  # failures make the run fail


def test_refused_credentials_are_a_one_line_error(ralph, tmp_path):
    wrong = tmp_path / "wrong-password"
    wrong.write_text("not-the-password")
    done = send(ralph, tmp_path, "--num-events", "10", password_file=str(wrong))
    assert done.returncode != 0 and "Traceback" not in done.stderr
    assert done.stderr.strip().splitlines()[-1].startswith(f"error: ralph: LRS {ralph.url} refused user 'loadtest'")
    assert "not-the-password" not in done.stderr


def test_an_unreachable_lrs_is_a_one_line_error(tmp_path):
    from stack import free_port

    done = run_locust(["-f", LOCUSTFILE, "--headless", "-u", "1", "-t", "5s", "--pipeline-backend", "ralph",
                       "--ralph-url", f"http://127.0.0.1:{free_port()}", "--no-e2e", "--no-monitor", "--no-sar"],
                      timeout=60)
    assert done.returncode != 0 and "Traceback" not in done.stderr
    assert done.stderr.strip().splitlines()[-1].startswith("error: ralph: LRS http://127.0.0.1:")
    assert "unreachable" in done.stderr.strip().splitlines()[-1]
