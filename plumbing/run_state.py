"""Per-run state of the suite's modules, kept beside Locust's Environment, never on it.

A module that keeps something for the length of a run declares it as one dataclass (every field
with a default) and reaches it with ``run_state.of(environment, ThatDataclass)``. Only that module reads
or writes it: the others use its public functions, and the run's lifecycle travels through
Locust's event hooks. The states go when the Environment goes.
"""

from __future__ import annotations

from typing import TypeVar
from weakref import WeakKeyDictionary

T = TypeVar("T")

_states: WeakKeyDictionary = WeakKeyDictionary()  # Environment -> {dataclass: its instance}


def of(environment: object, kind: type[T]) -> T:
    """The environment's one `kind`, made with its defaults on first use."""
    mine = _states.setdefault(environment, {})
    found = mine.get(kind)
    if found is None:
        found = mine[kind] = kind()
    return found


def reset(environment: object, kind: type[T]) -> T:
    """A fresh `kind` for the environment (a new test in the same process, e.g. from the web UI)."""
    found = _states.setdefault(environment, {})[kind] = kind()
    return found
