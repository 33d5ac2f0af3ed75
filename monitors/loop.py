"""The monitor's loop body, shared by the Locust plugin (monitors.locust_plugin.Monitor) and the
standalone `python -m monitors`: take one sample of every sampler, store it, and judge the drain.

Every sampler is asked at once, each in a thread of its own (a greenlet under gevent), and waited
for at most its timeout (--sampler-timeout): a server that hangs makes only its own figures missing
from a sample, never the sample late; a call still hanging is not started again until it returns.

Backlog rule (one for both): None when no sampler measures one, -1 (unknown, so not drained) when a
sampler that drains failed, else the sum of the samplers' backlogs. A sampler whose sample says its
lag cannot be measured (`lag_unknown`: e.g. a Redis stream no consumer group reads) makes the backlog
missing (None, never 0): said once, not waited on at the drain, and the drain is then unknown, not
"drained" (drain_outcome). Events a bus says it lost before its pipeline read them (a sample's
`lost_unread`) are taken off the backlogs that count every event sent (`counts_lost`: the end-to-end
check's sent − stored): they will never arrive, and the drain says how many instead of waiting.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from monitors.figures import error_text, flatten

log = logging.getLogger("monitors")


REMIND_EVERY = 30.0  # seconds between reminders that a sampler is still failing or late


class _Call:
    """One sampler's sample (and backlog), taken in a thread of its own (a greenlet under gevent's
    monkey-patching), so a server that hangs holds up only this call, never the loop."""

    def __init__(self, sampler) -> None:
        self.done = threading.Event()
        self.sample: dict | None = None
        self.backlog: int | None = None
        self.error: BaseException | None = None
        threading.Thread(target=self._run, args=(sampler,), name=f"sampler-{getattr(sampler, 'name', '')}",
                         daemon=True).start()

    def _run(self, sampler) -> None:
        try:
            self.sample = sampler.sample()
            self.backlog = sampler.backlog(self.sample)
        except Exception as exc:  # noqa: BLE001 - reported by the loop
            self.error = exc
        finally:
            self.done.set()


@dataclass
class _Trouble:
    """A sampler failing or late since `since` (monotonic): said once, recalled every REMIND_EVERY s."""

    since: float
    reminded: float
    missed: int = 0


def parse_timeouts(values, default: float) -> dict[str, float]:
    """--sampler-timeout values (SECONDS for every sampler, NAME=SECONDS for one; repeated or
    comma-separated) as {name: seconds} with "" for the rest; ValueError names a bad one."""
    out = {"": float(default)}
    if isinstance(values, str):
        values = [values]
    for value in values or []:
        for item in str(value).split(","):
            item = item.strip()
            if not item:
                continue
            name, sep, secs = item.rpartition("=")
            try:
                seconds = float(secs)
            except ValueError:
                seconds = -1.0
            if not seconds > 0:
                raise ValueError(f"--sampler-timeout {item!r}: expected SECONDS > 0 or NAME=SECONDS")
            out[name.strip() if sep else ""] = seconds
    return out


@dataclass
class Sampling:
    """The samplers of one run, sampled together, each within its timeout: a sampler that fails or
    answers late has its figures missing from that sample (said once, recalled every 30 s, and once
    when it answers again) while the others are sampled on time; it is retried every sample."""

    samplers: dict
    timeouts: dict = field(default_factory=lambda: {"": 5.0})  # parse_timeouts: seconds per sampler call
    errors: int = 0  # samples a sampler failed or was late
    max_backlog: int = 0
    latest: dict = field(default_factory=dict)  # the newest sample, for the web UI's pipeline tab
    unknown: dict = field(default_factory=dict)  # name -> why its lag is unknown, in the newest sample
    known_backlog: int | None = None  # the backlog of the samplers whose lag is known (what the drain waits on)
    lost: int = 0  # events the buses lost before their pipelines read them (in the newest sample)
    said_unknown: set = field(default_factory=set)  # the reasons already logged
    remind_every: float = REMIND_EVERY
    _calls: dict = field(default_factory=dict)  # name -> _Call (the last one started)
    _lost_base: dict = field(default_factory=dict)  # name -> its lost_unread in its first sample
    _lost_now: dict = field(default_factory=dict)  # name -> lost since then, in its newest sample
    _trouble: dict = field(default_factory=dict)  # name -> _Trouble

    def timeout(self, name: str) -> float:
        return self.timeouts.get(name, self.timeouts.get("", 5.0))

    def take(self, extra: dict | None = None) -> tuple[float, dict, int | None]:
        """(time, stats by source, backlog); `extra` are samples pushed since the last call."""
        now = time.time()
        start = time.monotonic()
        fresh: dict[str, _Call] = {}
        # One list for the whole sample: a sampler added while this one waits (a listener that runs
        # at the switch, e.g. the tracking run's e2e) is first asked at the next sample.
        samplers = list(self.samplers.items())
        for name, sampler in samplers:
            call = self._calls.get(name)
            if call is None or call.done.is_set():  # a call still hanging is not started again
                fresh[name] = self._calls[name] = _Call(sampler)
        stats: dict = {}
        backlogs: list[int] = []
        counting_lost: list[int] = []  # indexes in backlogs of those that count lost events (sent − stored)
        unknown: dict[str, str] = {}
        for name, sampler in samplers:
            call = self._calls[name]
            if name in fresh:
                call.done.wait(max(0.0, start + self.timeout(name) - time.monotonic()))
            if call.done.is_set() and name in fresh and call.error is None:
                sample = call.sample
                if call.backlog is not None:
                    if getattr(sampler, "counts_lost", False):
                        counting_lost.append(len(backlogs))
                    backlogs.append(int(call.backlog))
                elif isinstance(sample, dict) and sample.get("lag_unknown") and getattr(sampler, "drains", True):
                    unknown[name] = str(sample["lag_unknown"])
                self._recovered(name)
            else:
                if call.done.is_set() and name in fresh:
                    problem = f"failed: {error_text(call.error)}"
                    sample = {"error": error_text(call.error)}
                else:
                    problem = f"no answer within {self.timeout(name):g} s"
                    sample = {"error": f"missing: {problem}", "missing": True}
                self._troubled(name, problem)
                if getattr(sampler, "drains", True):
                    backlogs.append(-1)  # unknown: not drained
            stats[name] = sample
        stats.update(extra or {})
        # Events a bus trimmed before its pipeline read them (`lost_unread`) will never be stored:
        # sent − stored counts them, and the drain must not wait for them.
        # (A sampler's figure counts since its group began: this run's are the change since its first.)
        for name, sample in stats.items():
            if isinstance(sample, dict) and sample.get("lost_unread") is not None:
                self._lost_base.setdefault(name, int(sample["lost_unread"]))
                self._lost_now[name] = int(sample["lost_unread"]) - self._lost_base[name]
        self.lost = sum(self._lost_now.values())
        left = self.lost
        for i in counting_lost:
            if backlogs[i] > 0 and left > 0:
                taken = min(backlogs[i], left)
                backlogs[i], left = backlogs[i] - taken, left - taken
        known = [b for b in backlogs if b >= 0]
        backlog = None if not backlogs else (sum(known) if len(known) == len(backlogs) else -1)
        if known:
            self.max_backlog = max(self.max_backlog, sum(known))
        self._unknown(unknown)
        self.known_backlog = backlog
        if unknown and backlog != -1:
            backlog = None  # a sum without the unknown lag would pass for the pipeline's backlog
        self.latest = {"time": now, "stats": stats, "backlog": backlog}
        return now, stats, backlog

    def _unknown(self, unknown: dict[str, str]) -> None:
        """Say once why a lag is unknown, and when it is measured again."""
        for name, why in unknown.items():
            if why not in self.said_unknown:
                self.said_unknown.add(why)
                log.warning("monitor: %s: lag unknown — is the pipeline consuming? (%s's backlog is missing from "
                            "the samples, and the drain is not waited on for it)", why, name)
        for name in self.unknown.keys() - unknown.keys():
            log.warning("monitor: %s lag measured again (it was unknown: %s)", name, self.unknown[name])
        self.unknown = unknown

    def _troubled(self, name: str, problem: str) -> None:
        self.errors += 1
        now = time.monotonic()
        trouble = self._trouble.get(name)
        if trouble is None:
            self._trouble[name] = _Trouble(now, now, 1)
            log.warning("monitor: %s sampler %s; its figures are missing until it answers (retried every sample)",
                        name, problem)
            return
        trouble.missed += 1
        if now - trouble.reminded >= self.remind_every:
            trouble.reminded = now
            log.warning("monitor: %s sampler still %s after %.0f s (%d samples missing)", name,
                        problem if problem.startswith("failed") else f"late ({problem})", now - trouble.since,
                        trouble.missed)

    def _recovered(self, name: str) -> None:
        trouble = self._trouble.pop(name, None)
        if trouble is not None:
            log.warning("monitor: %s sampler answers again after %.1f s (%d samples missing)", name,
                        time.monotonic() - trouble.since, trouble.missed)

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


def drain_outcome(sampling: Sampling, waited: float, timeout: float,
                  since: str = "the test stopped") -> tuple[bool | None, str] | None:
    """`waited` s after `since`, judged on the newest sample: None to sample on, else (drained, what to
    log) with drained True, False (`timeout` reached first), or None (unknown: a lag that cannot be
    measured is neither waited on nor called drained)."""
    verdict = drain_verdict(sampling.known_backlog, waited, timeout)
    if verdict is None:
        return None
    if not verdict:
        return False, f"not drained {waited:.0f} s after {since} (backlog {sampling.known_backlog}); giving up"
    if sampling.unknown:
        why = "; ".join(sampling.unknown.values())
        rest = "" if sampling.known_backlog is None else f"the rest drained {waited:.1f} s after {since}; "
        return None, f"drain unknown ({why}; {rest}not waited on)"
    lost = f"; {sampling.lost:,} events were lost before the pipeline read them (not waited for)" if sampling.lost else ""
    return True, f"drained {waited:.1f} s after {since}{lost}"


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
