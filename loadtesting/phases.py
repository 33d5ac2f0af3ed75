"""Named windows on a run's timeline (minimal load, maximum sustainable load, failure, …).

The capacity search marks its three phases itself; a person marks others by hand, from the
web UI (``POST /phases/start?name=…`` / ``/phases/end``) or from a shell while the run lasts:

    python -m loadtesting.phases results/<run-id> start peak
    python -m loadtesting.phases results/<run-id> end peak
    python -m loadtesting.phases results/<run-id> list

Marks go to ``phases.jsonl`` in the run folder, one JSON object per line, so several writers
(the run, a shell) can append safely.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

PHASE_FILE = "phases.jsonl"
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")

# The brief's three capture points, as the capacity search names them.
MINIMAL, MAX_SUSTAINABLE, FAILURE = "minimal-load", "max-sustainable-load", "failure-load"


@dataclass
class Phase:
    name: str
    start: float
    end: float | None = None
    source: str = "manual"  # "capacity-search" or "manual"
    figures: dict = field(default_factory=dict)  # users, rps, failures, p95 … when known


def check_name(name: str) -> str:
    if not _NAME.match(name or ""):
        raise ValueError(f"phase name {name!r}: expected 1-64 letters, digits, '.', '_' or '-'")
    return name


def append(run_dir: Path | str, record: dict) -> None:
    path = Path(run_dir) / PHASE_FILE
    line = json.dumps(record, separators=(",", ":")) + "\n"
    with open(path, "a") as f:  # one write per line: appends from several processes stay whole
        f.write(line)


def mark(run_dir: Path | str | None, action: str, name: str, at: float | None = None, source: str = "manual") -> dict:
    """Start or end phase `name` now (or at `at`); written to the run folder when there is one."""
    if action not in ("start", "end"):
        raise ValueError(f"phase action {action!r}: expected start or end")
    record = {"action": action, "name": check_name(name), "time": time.time() if at is None else at, "source": source}
    if run_dir:
        append(run_dir, record)
    return record


def record_phase(run_dir: Path | str | None, phase: Phase) -> None:
    """A complete window (both ends known), as the capacity search writes them."""
    if run_dir:
        append(run_dir, {"action": "window", **asdict(phase)})


def from_records(records: list[dict]) -> list[Phase]:
    """Pair start/end marks by name (in order); windows pass through; an open start stays open."""
    phases: list[Phase] = []
    open_: dict[str, Phase] = {}
    for r in sorted(records, key=lambda r: r.get("time", r.get("start", 0))):
        action = r.get("action")
        if action == "window":
            phases.append(Phase(r["name"], r["start"], r.get("end"), r.get("source", "manual"), r.get("figures") or {}))
        elif action == "start":
            p = Phase(r["name"], r["time"], None, r.get("source", "manual"))
            open_[r["name"]] = p
            phases.append(p)
        elif action == "end" and r["name"] in open_:
            open_.pop(r["name"]).end = r["time"]
    return sorted(phases, key=lambda p: p.start)


def read(run_dir: Path | str) -> list[Phase]:
    path = Path(run_dir) / PHASE_FILE
    if not path.exists():
        return []
    records = []
    for line in path.read_text().splitlines():
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError:
            continue  # a line cut by a crash: the rest still counts
    return from_records(records)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m loadtesting.phases", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run_dir", type=Path, help="the run folder, results/<run-id>")
    parser.add_argument("action", choices=("start", "end", "list"))
    parser.add_argument("name", nargs="?", default="", help="phase name (start/end)")
    args = parser.parse_args(argv)
    if not args.run_dir.is_dir():
        print(f"error: run folder {args.run_dir} not found; expected results/<run-id>", file=sys.stderr)
        return 2
    if args.action == "list":
        for p in read(args.run_dir):
            end = "open" if p.end is None else f"{p.end - p.start:.0f} s"
            print(f"{p.name:24} {time.strftime('%H:%M:%S', time.gmtime(p.start))} UTC  {end:>8}  {p.source}")
        return 0
    try:
        rec = mark(args.run_dir, args.action, args.name)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"phase {rec['name']} {rec['action']} at {time.strftime('%H:%M:%S', time.gmtime(rec['time']))} UTC")
    return 0


if __name__ == "__main__":
    sys.exit(main())
