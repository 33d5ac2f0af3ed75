"""The worker processes Locust forks (`--processes N`): one that dies before the run's end fails it.

Locust's master waits for its forked children only when it exits (an `atexit` handler that logs "Bad
response code from worker children" for codes above 1, after the exit code is decided): a child that
died at its init left the run to go on with fewer workers and exit 0. Here each child is watched
from its fork: `os.register_at_fork` names it in the parent, and a gevent child watcher of our own
(libev tells every watcher of a pid) takes its exit status without reaping it, so Locust's own wait
still gets it. A child that exits before the run's end is said in one line (its pid and exit code)
and the run exits with ExitCode.WORKER_DIED; the other processes' measurements are kept as usual.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass

log = logging.getLogger("lifecycle")

# Exits that a signal to the whole process group explains (Ctrl-C, SIGTERM): judged at the run's end,
# where an interrupted run keeps its own code.
_SIGNALLED = {130, 143, -2, -15}


@dataclass
class Death:
    pid: int
    code: int  # the exit code, or -N when killed by signal N (os.waitstatus_to_exitcode)
    said: bool = False

    def line(self, forked: int) -> str:
        how = f"was killed by signal {-self.code}" if self.code < 0 else f"exited with code {self.code}"
        return (f"worker process {self.pid} (one of {forked} forked by --processes) {how} before the run's end; "
                "the run went on without it")


_forked: list[int] = []  # the children forked before the first init: Locust's --processes workers
_watchers: list = []
_deaths: dict[int, Death] = {}
_state = {"forking": True, "ending": False, "watching": False}


def _new_child() -> None:
    """In the parent, right after a fork: the child is the one child not yet known (the loop has not run
    since the fork, so even one already dead is still there, unreaped)."""
    if not _state["forking"]:
        return  # a fork of the suite's own, after Locust forked its workers
    import gevent
    import psutil

    known = set(_forked)
    for child in psutil.Process().children():
        if child.pid not in known:
            _forked.append(child.pid)
            watcher = gevent.get_hub().loop.child(child.pid, False)
            watcher.start(_exited, watcher)
            _watchers.append(watcher)


def _exited(watcher) -> None:
    watcher.stop()
    if _state["ending"] or watcher.rpid in _deaths:
        return  # told to quit at the run's end
    death = _deaths[watcher.rpid] = Death(watcher.rpid, os.waitstatus_to_exitcode(watcher.rstatus))
    if death.code not in _SIGNALLED and death.code != 0:
        death.said = True
        log.error(death.line(len(_forked)))


def _in_child() -> None:
    """A forked child starts with nothing to watch: its siblings are not its children."""
    _stop_watching()


def _stop_watching() -> None:
    for watcher in _watchers:
        watcher.stop()
    _forked.clear()
    _watchers.clear()
    _deaths.clear()


def watch_forks() -> None:
    """From Locust's option parsing on (before it forks its workers): watch each child it forks."""
    if not _state.get("watching"):
        _state["watching"] = True
        os.register_at_fork(after_in_parent=_new_child, after_in_child=_in_child)


def init(master_of_forked_workers: bool) -> None:
    """At Locust's init: Locust has forked its workers (if any); only their master keeps watching them."""
    _state["forking"] = False
    if not master_of_forked_workers:
        _stop_watching()


def run_started() -> None:
    """A new test (the web UI's next run): a worker that exits from now on is a death again."""
    _state["ending"] = False


def run_stopping() -> None:
    """The test stops: the master tells its workers to quit next (a headless run's end), so their exits
    from now on are no deaths."""
    _state["ending"] = True


def run_ending(interrupted: bool) -> list[str]:
    """At the run's end: one line per worker process that died before it stopped, each logged once (none
    when a signal stopped the run: the group's signal explains its children's exits)."""
    _state["ending"] = True
    if interrupted:
        return []
    lines = []
    for death in _deaths.values():
        line = death.line(len(_forked))
        if not death.said:
            death.said = True
            log.error(line)
        lines.append(line)
    return lines
