"""The run's identity and its rows: its id, its tags, the fields of its `start` and `end` rows and of its metadata.

`lifecycle.end` starts each test's run (a new id for each test from the web UI) and fires
`lifecycle.end.run_started(environment, run_id, start, meta)` on the master or a local runner, and
at its end `lifecycle.end.run_ending(environment, exit_code, end_row, meta)`: the monitor listens
and stores the rows. Anything may ask for `run_id(environment)` at any time.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field

from locust import events

from plumbing import run_state, settings
from plumbing.redaction import redact, redact_options
from plumbing.runid import new_run_id
from plumbing.versions import versions
from plumbing.web_options import per_test


@events.init_command_line_parser.add_listener
def _options(parser) -> None:
    g = parser.add_argument_group("run")
    g.add_argument("--run-id", default=settings.RUN_ID.default, env_var=settings.RUN_ID.env,
                   help="id of this run (default: a new one, UTC time + random, at each test start)")
    per_test(g.add_argument("--run-tags", default="", env_var="LOCUST_RUN_TAGS",
                   help="comma-separated tags stored with the run (e.g. baseline,2-workers)"))


@dataclass
class RunIdentity:
    """This process's run id (plumbing.run_state)."""

    run_id: str = ""
    used: set[str] = field(default_factory=set)  # a second test from the web UI gets a new id
    reserved: str = ""  # the id `reserve` chose for the test about to start


def _state(environment) -> RunIdentity:
    return run_state.of(environment, RunIdentity)


def _given(environment) -> str | None:
    o = environment.parsed_options
    return settings.RUN_ID.resolve(o.run_id if o is not None else None)


def _next(environment) -> str:
    run, given = _state(environment), _given(environment)
    return given if given and given not in run.used else new_run_id()


def reserve(environment) -> str:
    """The id of the test about to start, known before it starts (e.g. to name its run folder): the
    test's start takes this one. Reserving again before that start gives the same id."""
    run = _state(environment)
    if not run.reserved:
        run.reserved = _next(environment)
    return run.reserved


def new_id(environment) -> str:
    """A test starts: the reserved id, else the given one (--run-id, LOCUST_RUN_ID) unless an earlier
    test used it, else a new one."""
    run = _state(environment)
    run.run_id, run.reserved = run.reserved or _next(environment), ""
    run.used.add(run.run_id)
    return run.run_id


def run_id(environment) -> str:
    """The current run's id (set at test start; LOCUST_RUN_ID or --run-id when given)."""
    run = _state(environment)
    if not run.run_id:
        run.run_id = _given(environment) or new_run_id()
    return run.run_id


def tags(options) -> list[str]:
    return [t.strip() for t in (getattr(options, "run_tags", "") or "").split(",") if t.strip()]


def meta(environment) -> dict:
    """Fields of the run's metadata row: what ran, against what, with which options (secrets redacted)."""
    o = environment.parsed_options
    options = redact_options(dict(sorted(vars(o).items()))) if o is not None else {}
    return {"locustfile": str(getattr(o, "locustfile", "")), "host": redact(getattr(o, "host", "") or ""),
            "tags": tags(o), "options": json.dumps(options, default=str), "versions": json.dumps(versions())}


def start_row(environment, described: dict) -> dict:
    """Fields of the run's `start` row; `described`: what generators added with describe_run."""
    o = environment.parsed_options
    return {"tags": tags(o), "locustfile": getattr(o, "locustfile", None),
            "host": redact(getattr(o, "host", "") or ""), "users": getattr(o, "num_users", None),
            "spawn_rate": getattr(o, "spawn_rate", None), **described}


def end_row(extras: dict, drain, exit_code: int, interrupted: bool) -> dict:
    """Fields of the run's `end` row: what the run added (`add_run_extra`), the monitor's drain figures
    (`lifecycle.checks.Drain`), the exit code and whether a signal stopped the run before its planned end."""
    return {**extras, "drained": drain.drained, "drain_seconds": drain.seconds, "max_backlog": drain.max_backlog,
            **({"lag_unknown": drain.unknown} if drain.unknown else {}),
            "exit_code": exit_code, "interrupted": interrupted}


def end_meta(environment, extras: dict, drain, exit_code: int) -> dict:
    """Fields of the run's final metadata row (its first, `meta`, has exit code -1)."""
    return {"ended": time.time(), **meta(environment), "exit_code": exit_code, "drained": 1 if drain.drained else 0,
            "drain_seconds": drain.seconds or 0.0, "max_backlog": drain.max_backlog,
            "extra": json.dumps({**extras, "lag_unknown": drain.unknown} if drain.unknown else extras)}
