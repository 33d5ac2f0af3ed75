"""A new pipeline backend is one new module in backends/ and one name in backends.NAMES.

The test adds a toy backend that way to a copy of the suite (its sender writes each event as a
line of a file, its sampler counts the lines), runs the tracking locustfile on it with the monitor
sampling it (its console line showing the key figure the module declares), and checks how many files
the addition touched.
"""

from __future__ import annotations

import filecmp
import json
import re
import shutil
import subprocess
import uuid
from pathlib import Path

from plumbing.locust_csv import read_locust_stats
from tests.helpers import REPO, log_of, run_locust

TOY = '''"""toy: events as JSON lines in a file; its sampler counts the lines."""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass

from backends.base import Sender
from plumbing.options import OptionError

NAME = "toy"
REFERENCE_CONSUMER = None
KEY_FIGURES = ("lines",)


def add_monitor_arguments(group) -> None:
    group.add_argument("--toy-file", default=".run/toy.jsonl", env_var="LOCUST_TOY_FILE",
                       help="toy: the file events are written to")


def check_reachable(o) -> None:
    try:
        os.close(os.open(o.toy_file, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644))
    except OSError as exc:
        raise OptionError(f"--toy-file {o.toy_file!r}: {exc.strerror}") from None


@dataclass
class ToySender(Sender):
    path: str = ""

    def send(self, event: dict, planned: float | None = None) -> None:
        start, t0 = time.time(), time.perf_counter()
        line = (json.dumps(event) + "\\n").encode()
        with open(self.path, "ab") as f:
            f.write(line)
        self._fire(event["name"], start, t0, len(line), None, planned)


def sender(environment, o) -> ToySender:
    return ToySender(environment, NAME, path=o.toy_file)


class Sampler:
    name = NAME

    def __init__(self, path: str) -> None:
        self.path = path

    def sample(self) -> dict:
        with open(self.path, "rb") as f:
            data = f.read()
        return {"bytes": len(data), "lines": data.count(b"\\n")}

    def backlog(self, sample: dict) -> int | None:
        return 0

    def close(self) -> None:
        pass


def sampler(o) -> Sampler:
    return Sampler(o.toy_file)


def entry(opts: dict) -> str:
    return opts.get("toy_file") or ""
'''


def copy_of_the_suite(dest: Path) -> Path:
    files = subprocess.run(["git", "ls-files", "-co", "--exclude-standard"], cwd=REPO, capture_output=True,
                           text=True, check=True).stdout.split()
    for name in files:
        if (REPO / name).is_file():
            (dest / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(REPO / name, dest / name)
    return dest


def add_toy_backend(repo: Path) -> None:
    (repo / "backends" / "toy.py").write_text(TOY)
    registry = repo / "backends" / "__init__.py"
    text = registry.read_text()
    line = next(ln for ln in text.splitlines() if ln.startswith("NAMES = ("))
    registry.write_text(text.replace(line, line.replace(")", ', "toy")')))


def touched(copy: Path) -> list[str]:
    """Files of the copy that are new or differ from the suite's."""
    out = []
    for path in copy.rglob("*"):
        if path.is_file() and "__pycache__" not in path.parts:
            name = path.relative_to(copy)
            original = REPO / name
            if not original.is_file() or not filecmp.cmp(original, path, shallow=False):
                out.append(str(name))
    return sorted(out)


def test_a_backend_added_as_one_module_and_one_name_runs_end_to_end(clickhouse, tmp_path):
    repo = copy_of_the_suite(tmp_path / "suite")
    add_toy_backend(repo)
    assert touched(repo) == ["backends/__init__.py", "backends/toy.py"]

    events_file, results = tmp_path / "toy.jsonl", tmp_path / "results"
    results.mkdir()
    db = f"toy_{uuid.uuid4().hex[:8]}"
    done = run_locust(
        ["-f", "locustfiles/tracking.py", "--headless", "-u", "2", "-r", "2", "-t", "120s",
         "--pipeline-backend", "toy", "--monitor-backend", "toy", "--toy-file", str(events_file),
         "--num-events", "40", "--sleep-time", "0", "--no-e2e", "--clickhouse-url", clickhouse.url,
         "--monitor-database", db, "--monitor-interval", "0.5", "--csv", str(tmp_path / "run")],
        cwd=repo, env={"PYTHONPATH": str(repo), "LOCUST_RESULTS_DIR": str(results)}, timeout=180)
    assert done.returncode == 0, log_of(done.stderr)
    assert len(events_file.read_text().splitlines()) == 40
    assert int(read_locust_stats(tmp_path / "run")["Aggregated"]["Request Count"]) == 40
    samples = [json.loads(line) for line in (results / "samples.jsonl").read_text().splitlines()]
    assert samples and samples[-1]["stats"]["toy"]["lines"] == 40  # the monitor sampled the toy backend to the end
    # The console line shows the figures the module declares (KEY_FIGURES), not its first four.
    toy_figures = re.findall(r"\btoy: ([^|\n]*)", done.stderr)
    assert toy_figures and {f.strip() for f in toy_figures} >= {"lines=40"}
    assert all(re.fullmatch(r"lines=\d+", f.strip()) for f in toy_figures), toy_figures
