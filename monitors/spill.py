"""Spill files: rows a ClickHouse did not take, kept on disk with the destination they were meant for.

A file is JSON lines: a header naming its destination, then one `{"table", "row"}` per row:

    {"spill": 2, "destination": {"server": "ch.example.com:9000", "server_name": "ch-1", "database": "event_sink"}}

`server` is host:port from the ClickHouse URL (never the user or password), `server_name` the
server's own `hostName()` when the sink had reached it before spilling (else null), `database`
where the rows go. A file is replayed only into the same destination: same host:port and
database, and the same server name when both sides know it (so an SSH tunnel on the same local
port to another server is not taken for it). Files of an earlier format carry no server and are
never replayed by themselves. `python -m monitors replay-spill list|replay|discard` handles the
rest by hand.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path

from plumbing import chclient, settings
from plumbing.redaction import redact

FORMAT = 2
PATTERNS = ("*.spill.jsonl", "*.spill.jsonl.replaying")  # .replaying: taken by a sink, being replayed


@dataclass(frozen=True)
class Destination:
    server: str  # host:port
    database: str
    server_name: str | None = None  # the server's hostName(), when known

    @classmethod
    def of(cls, url: str, database: str, server_name: str | None = None) -> Destination:
        u = chclient.parse_url(url)
        return cls(f"{u.host}:{u.port}", database, server_name)

    def matches(self, other: Destination) -> bool:
        if (self.server, self.database) != (other.server, other.database):
            return False
        return not (self.server_name and other.server_name) or self.server_name == other.server_name

    def __str__(self) -> str:
        name = f" ({self.server_name})" if self.server_name else ""
        return f"{self.server}{name}/{self.database}"


@dataclass
class SpillFile:
    path: Path
    destination: Destination | None  # None: a file of the former format (no server recorded)
    rows: int
    legacy_databases: tuple[str, ...] = ()

    def describe(self) -> str:
        where = str(self.destination) if self.destination else \
            f"unknown server (former format), database {', '.join(self.legacy_databases) or '?'}"
        when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(self.path.stat().st_mtime))
        return f"{self.path}: {self.rows} rows for {where}, last written {when}"


def header(destination: Destination) -> str:
    return json.dumps({"spill": FORMAT, "destination": asdict(destination)}) + "\n"


def write_rows(path: Path, destination: Destination, rows: Iterator[tuple[str, dict]]) -> int:
    """Append (table, row) pairs to `path`, starting it with its header when new; the count written."""
    path.parent.mkdir(parents=True, exist_ok=True)
    n = 0
    with open(path, "a") as f:
        if f.tell() == 0:
            f.write(header(destination))
        for table, row in rows:
            f.write(json.dumps({"table": table, "row": row}) + "\n")
            n += 1
    return n


def read(path: Path) -> tuple[Destination | None, list[tuple[str, str, dict]]]:
    """(destination, [(database, table, row)]) of a spill file, in order."""
    destination, rows = None, []
    with open(path) as f:
        for line in f:
            if not line.strip():
                continue
            item = json.loads(line)
            if "spill" in item:
                destination = Destination(**item["destination"])
            elif destination is not None:
                rows.append((destination.database, item["table"], item["row"]))
            else:  # the former format: each row names its database, no server
                rows.append((item["database"], item["table"], item["row"]))
    return destination, rows


def files(spill_dir: Path | str | None) -> list[SpillFile]:
    if not spill_dir or not Path(spill_dir).is_dir():
        return []
    out = []
    for pattern in PATTERNS:
        for path in sorted(Path(spill_dir).glob(pattern)):
            try:
                destination, rows = read(path)
            except (OSError, ValueError, KeyError, TypeError):
                continue  # unreadable: neither replayed nor removed
            out.append(SpillFile(path, destination, len(rows), tuple(sorted({db for db, _, _ in rows}))))
    return out


def rewrite(path: Path, destination: Destination | None, rows: list[tuple[str, str, dict]]) -> None:
    """Replace `path` by what is left of it (atomically: a crash never re-inserts what was written)."""
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w") as f:
        if destination is not None:
            f.write(header(destination))
        for database, table, row in rows:
            item = {"table": table, "row": row} if destination is not None else \
                {"table": table, "database": database, "row": row}
            f.write(json.dumps(item) + "\n")
    os.replace(tmp, path)


def insert_file(client, path: Path, destination: Destination | None, rows: list[tuple[str, str, dict]],
                database: str | None = None) -> int:
    """Insert a file's rows table by table through `client`, shrinking the file after each table;
    remove it when done. `database` overrides the rows' own (a forced replay). The count inserted."""
    from monitors import schema

    by_table: dict[tuple[str, str], list[dict]] = {}
    for db, table, row in rows:
        by_table.setdefault((database or db, table), []).append(row)
    ensured: set[str] = set()
    done = 0
    while by_table:
        (db, table), batch = next(iter(by_table.items()))
        if db not in ensured:
            schema.ensure(client, db)
            ensured.add(db)
        client.execute(schema.insert_sql(table, db), [schema.to_tuple(table, r) for r in batch])
        done += len(batch)
        del by_table[(db, table)]
        rewrite(path, destination, [(d, t, r) for (d, t), rest in by_table.items() for r in rest])
    path.unlink()
    return done


# -- python -m monitors replay-spill ------------------------------------------------------------
def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m monitors replay-spill",
                                description="List, replay or discard the rows kept while a ClickHouse was unreachable.")
    p.add_argument("action", choices=["list", "replay", "discard"])
    p.add_argument("files", nargs="*", type=Path, help="spill files (default: every file in --spill-dir)")
    p.add_argument("--spill-dir", default=settings.SPILL_DIR.resolve(), help="default: LOCUST_SPILL_DIR or .run/monitor-spill")
    p.add_argument("--clickhouse-url", default=settings.CLICKHOUSE_URL.resolve(),
                   help="replay into this ClickHouse (default: LOCUST_CLICKHOUSE_URL or the local stack's)")
    p.add_argument("--monitor-database", default=settings.MONITOR_DATABASE.resolve())
    p.add_argument("--force", action="store_true",
                   help="replay the files named into --clickhouse-url/--monitor-database although they were "
                        "meant for another destination (or none is recorded)")
    p.add_argument("--all", action="store_true", help="discard: every file in --spill-dir")
    return p


def main(argv: list[str]) -> int:
    args = parser().parse_args(argv)
    known = files(args.spill_dir)
    if args.files:
        by_path = {f.path.resolve(): f for f in known}
        chosen = []
        for path in args.files:
            if path.resolve() in by_path:
                chosen.append(by_path[path.resolve()])
                continue
            try:
                destination, rows = read(path)
            except (OSError, ValueError, KeyError, TypeError) as exc:
                print(f"error: {path}: not a readable spill file ({exc})", file=sys.stderr)
                return 2
            chosen.append(SpillFile(path, destination, len(rows), tuple(sorted({db for db, _, _ in rows}))))
    else:
        chosen = known
    if args.action == "list":
        for f in chosen:
            print(f.describe())
        print(f"{len(chosen)} spill file(s), {sum(f.rows for f in chosen)} rows in {args.spill_dir}")
        return 0
    if args.action == "discard":
        if not args.files and not args.all:
            print("error: discard: name the files to discard, or --all", file=sys.stderr)
            return 2
        for f in chosen:
            f.path.unlink()
            print(f"discarded {f.rows} rows: {f.path}")
        return 0
    # replay
    try:
        from monitors.schema import check_database_name

        check_database_name(args.monitor_database)
        target = Destination.of(args.clickhouse_url, args.monitor_database)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    client = chclient.connect(args.clickhouse_url)
    try:
        target = Destination(target.server, target.database, client.execute("SELECT hostName()")[0][0])
    except Exception as exc:  # noqa: BLE001 - said in one line
        from monitors.figures import error_text

        print(f"error: --clickhouse-url {redact(args.clickhouse_url)}: {error_text(exc)}", file=sys.stderr)
        return 1
    code, kept = 0, []
    for f in chosen:
        meant_here = f.destination is not None and target.matches(f.destination)
        if not meant_here and not (args.files and args.force):
            if args.files:
                print(f"error: {f.path} was meant for {f.destination or 'an unknown server (former format)'}, "
                      f"not {target}; --force replays it there anyway", file=sys.stderr)
                code = 2
            kept.append(f)
            continue
        destination, rows = read(f.path)
        n = insert_file(client, f.path, destination, rows, database=None if meant_here else target.database)
        print(f"replayed {n} rows from {f.path} into {target}")
    if kept and not args.files:
        print(f"kept {len(kept)} file(s) meant for other destinations (python -m monitors replay-spill list)")
    client.disconnect()
    return code
