"""A worker process Locust forked (--processes N) that dies fails the run, in one line."""

from __future__ import annotations

import json
import re

from tests.helpers import run_locust

LOCUSTFILE = "tests/lifecycle/dying_worker_locustfile.py"


def _json_documents(text: str) -> list:
    decoder, docs, i = json.JSONDecoder(), [], 0
    while (i := text.find("[", i)) >= 0:
        doc, i = decoder.raw_decode(text, i)
        docs.append(doc)
    return docs


def test_a_run_whose_forked_worker_died_at_init_exits_non_zero_naming_it(tmp_path):
    done = run_locust(["-f", LOCUSTFILE, "--headless", "--users", "4", "--spawn-rate", "10", "--run-time", "3s",
                       "--processes", "2", "--json"], env={"DIE_ONCE": str(tmp_path / "died")})
    said = re.findall(r"worker process (\d+) \(one of 2 forked by --processes\) exited with code 1 before the "
                      r"run's end; the run went on without it", done.stderr)
    assert done.returncode == 10, done.stderr[-3000:]
    assert len(said) == 1, done.stderr[-3000:]
    assert f"this worker process ({said[0]}) was told to die at its init" in done.stderr
    master = max(_json_documents(done.stdout), key=len)  # the surviving worker prints its own (empty) list
    assert {s["name"]: s["num_requests"] for s in master}["work"] > 0  # the other worker's measurements kept


def test_a_run_whose_forked_workers_all_lived_exits_0(tmp_path):
    done = run_locust(["-f", LOCUSTFILE, "--headless", "--users", "2", "--spawn-rate", "10", "--run-time", "2s",
                       "--processes", "2"])
    assert done.returncode == 0, done.stderr[-3000:]
    assert "worker process" not in done.stderr
