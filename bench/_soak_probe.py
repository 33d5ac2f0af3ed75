"""The soak's probe, a Locust plugin loaded next to a locustfile (`-f locustfiles/x.py,bench/_soak_probe.py`).

Every SOAK_PROBE_INTERVAL seconds (default 60), and once more when the test starts stopping (the
users still running), it appends this process's figures to SOAK_PROBE_FILE as a JSON line: RSS, open
descriptors (files and sockets), threads, and live greenlets. Then it ends: the stop itself, with its
short-lived greenlets, is no part of a steady state. Greenlets are counted from the garbage
collector's objects: a walk of the heap, cheap at one a minute.
"""

from __future__ import annotations

import gc
import json
import os
import time

import gevent
import psutil
from greenlet import greenlet
from locust import events


def snapshot() -> dict:
    proc = psutil.Process()
    return {"time": time.time(), "pid": proc.pid, "rss": proc.memory_info().rss, "fds": proc.num_fds(),
            "threads": proc.num_threads(), "greenlets": sum(1 for o in gc.get_objects() if isinstance(o, greenlet))}


def write(path: str, **extra) -> None:
    with open(path, "a") as f:
        f.write(json.dumps({**snapshot(), **extra}) + "\n")


def _probe(path: str, interval: float) -> None:
    while True:
        write(path)
        gevent.sleep(interval)


@events.init.add_listener
def _start(environment, **_kw) -> None:
    path = os.environ.get("SOAK_PROBE_FILE")
    if not path:
        return
    probe = gevent.spawn(_probe, path, float(os.environ.get("SOAK_PROBE_INTERVAL", "60")))

    @environment.events.test_stopping.add_listener
    def _stopping(**_kw) -> None:
        if not probe.dead:
            probe.kill()
            write(path, stopping=True)
