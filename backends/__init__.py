"""The pipeline backends: one module per backend, and `NAMES` below, the only list of them.

A backend module `backends/<name>.py` holds everything about one way into an analytics pipeline
(every hook but `sender` and `check_reachable` is optional):

    add_arguments(group)          the generator's options (generators/tracking.py)
    add_monitor_arguments(group)  where its broker is and what to sample (every locustfile, the monitor)
    check_options(options)        one-line errors (plumbing.options.require) for its own options
    check_reachable(options)      before the run: its entry point answers, else one OptionError line
    sender(environment, options)  a backends.base.Sender putting one tracking event in per send()
    sampler(options)              a monitor sampler: sample(), backlog(sample), close()
    entry(opts: dict) -> str      where events entered, for the report (no credentials)
    KEY_FIGURES                   the sample's figures shown in the monitor's console line and web tab
    REFERENCE_CONSUMER            the `python -m` module consuming its events into ClickHouse, or None

Adding a backend: one new module here and its name in NAMES.
"""

from __future__ import annotations

import importlib
from types import ModuleType

NAMES = ("celery", "redis_bus", "kafka_bus", "vector", "ralph")


def get(name: str) -> ModuleType:
    """The backend module `name` (one of NAMES)."""
    if name not in NAMES:
        raise KeyError(name)
    return importlib.import_module(f"backends.{name}")


def modules() -> list[ModuleType]:
    """Every backend module, in NAMES order."""
    return [get(name) for name in NAMES]


def having(hook: str) -> tuple[str, ...]:
    """The names of the backends that define `hook` (e.g. "sampler"), in NAMES order."""
    return tuple(m.NAME for m in modules() if getattr(m, hook, None) is not None)
