"""lifecycle.budget: one rule splits a budget between the load-generating processes (run in a
subprocess: the module registers Locust listeners, and Locust stays out of pytest's process)."""

from __future__ import annotations

import json
import subprocess
import sys

from tests.helpers import REPO

CASES = [(0, 1), (1, 3), (10, 3), (1000, 7), (5, 5), (2, 4)]


def test_shares_add_up_to_the_total_and_differ_by_at_most_one():
    code = ("import json, sys; from lifecycle.budget import share; "
            "print(json.dumps([[share(t, i, c) for i in range(c)] for t, c in json.loads(sys.argv[1])]))")
    out = subprocess.run([sys.executable, "-c", code, json.dumps(CASES)], cwd=REPO, capture_output=True, text=True,
                         check=True).stdout
    for (total, _count), parts in zip(CASES, json.loads(out), strict=True):
        assert sum(parts) == total
        assert max(parts) - min(parts) <= 1
        assert parts == sorted(parts, reverse=True)  # the first processes take the remainder
