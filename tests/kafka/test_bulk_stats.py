"""Deliveries folded into Locust's statistics in bulk equal one events.request per delivery.

Locust stays out of the pytest process (it monkey-patches), so the comparison runs in a subprocess.
"""

import json
import subprocess
import sys

from tests.helpers import REPO, log_of

COMPARE = r"""
import json, random
from locust import events
from locust.env import Environment
from plumbing.bulk_stats import BulkRequests

rng = random.Random(7)
times_s = [rng.choice((rng.uniform(0.0001, 0.09), rng.uniform(0.1, 3.0))) for _ in range(5000)]
one_by_one = Environment(events=events)
for t in times_s:
    one_by_one.stats.log_request("PRODUCE", "t", t * 1000, 100)  # what Locust's request listener does
bulk_env = Environment(events=events)
bulk = BulkRequests(bulk_env, "PRODUCE", "t")
for i in range(0, len(times_s), 700):  # several flushes, as the delivery pump does
    bulk.pending.extend(times_s[i:i + 700])
    bulk.bytes += 100 * len(times_s[i:i + 700])
    bulk.flush()

def figures(e):
    return {"count": e.num_requests, "bytes": e.total_content_length, "total_ms": round(e.total_response_time, 6),
            "min": e.min_response_time, "max": e.max_response_time, "hist": sum(e.response_times.values()),
            "p": [e.get_response_time_percentile(p) for p in (0.5, 0.95, 0.99)]}

print(json.dumps({"one_by_one": [figures(one_by_one.stats.get("t", "PRODUCE")), figures(one_by_one.stats.total)],
                  "bulk": [figures(bulk_env.stats.get("t", "PRODUCE")), figures(bulk_env.stats.total)],
                  "flushed": bulk.count}))
"""


def test_bulk_fold_gives_the_statistics_of_one_event_per_request():
    done = subprocess.run([sys.executable, "-c", COMPARE], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, log_of(done.stderr)
    out = json.loads(done.stdout)
    assert out["flushed"] == 5000
    for a, b in zip(out["one_by_one"], out["bulk"], strict=True):
        assert a["count"] == b["count"] == 5000 and a["bytes"] == b["bytes"] == 500_000
        assert abs(a["total_ms"] - b["total_ms"]) <= 1e-6 * a["total_ms"]
        assert (a["min"], a["max"], a["p"]) == (b["min"], b["max"], b["p"])
        assert b["hist"] == 5000
