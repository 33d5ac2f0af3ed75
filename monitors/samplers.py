"""Which samplers a run uses: `--monitor-backend NAME` (several allowed), any backend with a sampler.

The host sampler always runs; choosing a backend adds its sampler plus the ClickHouse one
(xAPI freshness and server health), as the reference monitor paired them.
"""

from __future__ import annotations

from typing import Protocol

import backends
from monitors import clickhouse, host
from monitors.loop import close_all, parse_timeouts

# The backends that have a sampler (backends.NAMES is the list).
BACKENDS = backends.having("sampler")


class Sampler(Protocol):
    name: str

    def sample(self) -> dict: ...

    def backlog(self, sample: dict) -> int | None: ...

    def close(self) -> None: ...


def parse_backends(values) -> list[str]:
    """Backends from repeated and/or comma-separated values; ValueError names an unknown one."""
    if isinstance(values, str):
        values = [values]
    out: list[str] = []
    for value in values or []:
        for name in str(value).split(","):
            name = name.strip()
            if not name:
                continue
            if name not in BACKENDS:
                raise ValueError(f"--monitor-backend {name!r} is unknown; expected one of: {', '.join(BACKENDS)}")
            if name not in out:
                out.append(name)
    return out


def chosen(options) -> list[str]:
    """The backends --monitor-backend names (ValueError names an unknown one)."""
    return parse_backends(getattr(options, "monitor_backend", []))


def add_arguments(parser) -> None:
    """Every sampler's options, in groups, on a Locust or configargparse parser."""
    group = parser.add_argument_group("pipeline monitor: samplers")
    group.add_argument("--monitor-backend", action="append", default=[], env_var="LOCUST_MONITOR_BACKEND",
                       help=f"pipeline backend(s) to sample: {', '.join(BACKENDS)} (repeat or comma-separate)")
    group.add_argument("--sampler-timeout", action="append", default=[], env_var="LOCUST_SAMPLER_TIMEOUT",
                       help="seconds a sampler may take per sample before its figures count as missing for that "
                            f"sample (default: the monitor interval, at least {MIN_TIMEOUT:g}); NAME=SECONDS for "
                            "one sampler (e.g. redis_bus=3); repeat or comma-separate")
    clickhouse.add_arguments(group)
    for backend in backends.modules():
        if hasattr(backend, "add_monitor_arguments"):
            backend.add_monitor_arguments(group)
    host.add_arguments(group)


MIN_TIMEOUT = 2.0  # the default sampler timeout's floor: a short interval does not make servers late


def timeouts(options, interval: float) -> dict[str, float]:
    """Each sampler's timeout ({name: seconds}, "" for the rest) when the monitor samples every `interval`
    seconds; ValueError names a bad value."""
    out = parse_timeouts(getattr(options, "sampler_timeout", []), max(interval, MIN_TIMEOUT))
    known = ("clickhouse", *BACKENDS, "host", "e2e")  # e2e: the tracking run's end-to-end sampler
    for name in out:
        if name and name not in known:
            raise ValueError(f"--sampler-timeout {name}=…: no sampler {name!r}; expected one of: {', '.join(known)}")
    return out


def build_samplers(options) -> dict[str, Sampler]:
    """The host sampler, and for any backend chosen, the ClickHouse sampler and the backend's."""
    samplers: dict[str, Sampler] = {}
    backends_chosen = chosen(options)
    try:
        if backends_chosen:
            samplers["clickhouse"] = clickhouse.from_options(options)
        for name in backends_chosen:
            samplers[name] = backends.get(name).sampler(options)
        samplers["host"] = host.from_options(options)
    except Exception:
        close_all(samplers)
        raise
    return samplers
