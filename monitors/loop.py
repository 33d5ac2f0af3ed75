"""The monitor's loop body, shared by the Locust plugin (monitors.locust_plugin.Monitor) and the
standalone `python -m monitors`: take one sample of every sampler, store it, and judge the drain.

Backlog rule (one for both): None when no sampler measures one, -1 (unknown, so not drained) when a
sampler that drains failed, else the sum of the samplers' backlogs.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path

from monitors.figures import error_text, flatten

log = logging.getLogger("monitors")


@dataclass
class Sampling:
    """The samplers of one run, sampled together; failures are reported and retried every sample."""

    samplers: dict
    errors: int = 0
    max_backlog: int = 0
    latest: dict = field(default_factory=dict)  # the newest sample, for the web UI's pipeline tab

    def take(self, extra: dict | None = None) -> tuple[float, dict, int | None]:
        """(time, stats by source, backlog); `extra` are samples pushed since the last call."""
        now = time.time()
        stats: dict = {}
        backlogs: list[int] = []
        for name, sampler in list(self.samplers.items()):  # others may add a sampler meanwhile
            try:
                sample = sampler.sample()
                b = sampler.backlog(sample)
                if b is not None:
                    backlogs.append(int(b))
            except Exception as exc:  # noqa: BLE001 - a dead dependency is reported and retried
                self.errors += 1
                sample = {"error": error_text(exc)}
                if self.errors == 1 or self.errors % 20 == 0:
                    log.warning("monitor: %s sampler failed (%s); retrying every sample", name, sample["error"])
                if getattr(sampler, "drains", True):
                    backlogs.append(-1)  # unknown: not drained
            stats[name] = sample
        stats.update(extra or {})
        known = [b for b in backlogs if b >= 0]
        backlog = None if not backlogs else (sum(known) if len(known) == len(backlogs) else -1)
        if known:
            self.max_backlog = max(self.max_backlog, sum(known))
        self.latest = {"time": now, "stats": stats, "backlog": backlog}
        return now, stats, backlog

    def close(self) -> None:
        close_all(self.samplers)


def close_all(samplers: dict) -> None:
    """Close every sampler; one that fails to close (its server gone) does not keep the others open."""
    for sampler in samplers.values():
        try:
            sampler.close()
        except Exception:  # noqa: BLE001 - nothing left to measure from it
            pass


def drained(backlog: int | None) -> bool:
    """Nothing left in the pipeline: no backlog measured, or every backlog known and 0."""
    return backlog is None or backlog == 0


def drain_verdict(backlog: int | None, waited: float, timeout: float) -> bool | None:
    """After the load stopped: True when drained, False when `waited` reached `timeout` first (give
    up), None to sample on."""
    if drained(backlog):
        return True
    if waited >= timeout:
        return False
    return None


def store_sample(sink, run_id: str, now: float, stats: dict, backlog: int | None,
                 results_dir: Path | None = None) -> None:
    """One sample into the sink (stats row, one row per metric, the backlog) and the run folder."""
    ms = int(now * 1000)
    if sink:
        sink.add("load_test_stats", {"run_id": run_id, "timestamp": now, "stats": json.dumps(stats)})
        for source, sample in stats.items():
            for metric, value in flatten(sample):
                sink.add("load_test_samples", {"run_id": run_id, "timestamp": now, "time_ms": ms,
                                               "source": source, "metric": metric, "value": value})
        if backlog is not None:
            sink.add("load_test_samples", {"run_id": run_id, "timestamp": now, "time_ms": ms,
                                           "source": "monitor", "metric": "backlog", "value": float(backlog)})
    if results_dir:
        with open(results_dir / "samples.jsonl", "a") as f:
            f.write(json.dumps({"run_id": run_id, "time": now, "stats": stats, "backlog": backlog}) + "\n")
