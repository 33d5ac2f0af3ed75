"""Rows never land in a ClickHouse they were not meant for: spill files keep their destination."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import time
import uuid
from pathlib import Path

from monitors import spill
from monitors.sink import Sink
from plumbing import chclient, settings
from tests.helpers import REPO
from tests.monitor.conftest import locust
from tests.monitor.test_lifecycle import Output

DEAD = "clickhouse://default@127.0.0.1:1/default"  # nothing listens on port 1


def rows_of(ch, run_id: str, db: str = "event_sink") -> int:
    return ch.execute(f"SELECT count() FROM {db}.load_test_runs WHERE run_id = %(r)s", {"r": run_id})[0][0]


def spill_rows(url: str, folder: Path, run_id: str, n: int = 3, database: str = "event_sink") -> Path:
    """`n` rows of `run_id` spilled by a sink for `url` that never reached it (memory bound of 0 rows)."""
    sink = Sink(url, database, folder, name=f"spill-{run_id}", max_rows=0)
    for i in range(n):
        sink.add("load_test_runs", {"run_id": run_id, "timestamp": time.time(), "event_type": f"e{i}", "extra": "{}"})
    assert sink.pending_rows() == 0
    return sink.spill_path


def replay_spill(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "monitors", "replay-spill", *args], cwd=REPO, capture_output=True,
                          text=True, timeout=120)


def test_a_spill_file_names_its_destination_without_secrets(tmp_path):
    path = spill_rows("clickhouse://loader:s3cret-pw@127.0.0.1:1/default", tmp_path, "t-dest-1")
    lines = path.read_text().splitlines()
    assert json.loads(lines[0]) == {"spill": 2, "destination": {"server": "127.0.0.1:1", "database": "event_sink",
                                                                "server_name": None}}
    assert len(lines) == 4 and "s3cret" not in path.read_text() and "loader" not in path.read_text()


def test_rows_meant_for_another_clickhouse_are_kept_and_listed_never_written_here(clickhouse, ch, tmp_path, caplog):
    path = spill_rows(DEAD, tmp_path, "t-dest-2")
    alive = Sink(clickhouse.url, "event_sink", tmp_path, name="alive")
    with caplog.at_level(logging.WARNING, logger="monitors.sink"):
        assert alive.flush(force=True)
        assert alive.flush(force=True)
    assert rows_of(ch, "t-dest-2") == 0
    assert path.exists() and alive.replayed == 0
    said = [r.getMessage() for r in caplog.records if "kept" in r.getMessage()]
    assert len(said) == 1 and "127.0.0.1:1/event_sink" in said[0], said  # once, naming where they belong


def test_rows_meant_for_this_clickhouse_are_replayed_by_the_next_run_saying_where(clickhouse, ch, tmp_path, caplog):
    path = spill_rows(clickhouse.url, tmp_path, "t-dest-3")
    sink = Sink(clickhouse.url, "event_sink", tmp_path, name="next-run")
    with caplog.at_level(logging.WARNING, logger="monitors.sink"):
        assert sink.flush(force=True)
    assert rows_of(ch, "t-dest-3") == 3 and not path.exists()
    u = chclient.parse_url(clickhouse.url)
    said = [r.getMessage() for r in caplog.records if "replayed" in r.getMessage()]
    assert len(said) == 1 and f"replayed 3 spilled rows from {path} into {u.host}:{u.port} (" in said[0], said
    assert said[0].endswith("/event_sink")


def test_another_database_is_another_destination(clickhouse, ch, tmp_path):
    path = spill_rows(clickhouse.url, tmp_path, "t-dest-4", database="event_sink_elsewhere")
    assert Sink(clickhouse.url, "event_sink", tmp_path, name="other-db").flush(force=True)
    assert path.exists() and rows_of(ch, "t-dest-4") == 0


def test_the_same_address_serving_another_server_is_another_destination(clickhouse, ch, tmp_path):
    # e.g. a tunnel on the same local port that led to another server when the rows were spilled
    u = chclient.parse_url(clickhouse.url)
    path = tmp_path / "tunnel.spill.jsonl"
    spill.write_rows(path, spill.Destination(f"{u.host}:{u.port}", "event_sink", "another-server"),
                     [("load_test_runs", {"run_id": "t-dest-5", "timestamp": 0, "event_type": "e", "extra": "{}"})])
    assert Sink(clickhouse.url, "event_sink", tmp_path, name="here").flush(force=True)
    assert path.exists() and rows_of(ch, "t-dest-5") == 0


def test_files_of_the_former_format_are_never_replayed_by_themselves(clickhouse, ch, tmp_path):
    path = tmp_path / "old.spill.jsonl"
    path.write_text(json.dumps({"table": "load_test_runs", "database": "event_sink",
                                "row": {"run_id": "t-dest-6", "timestamp": 0, "event_type": "e", "extra": "{}"}}) + "\n")
    assert Sink(clickhouse.url, "event_sink", tmp_path, name="here").flush(force=True)
    assert path.exists() and rows_of(ch, "t-dest-6") == 0


def test_replay_spill_lists_replays_and_discards_explicitly(clickhouse, ch, tmp_path):
    mine = spill_rows(clickhouse.url, tmp_path, "t-dest-7", n=2)
    theirs = spill_rows(DEAD, tmp_path, "t-dest-8", n=4)
    folder = ["--spill-dir", str(tmp_path), "--clickhouse-url", clickhouse.url]
    listed = replay_spill("list", *folder)
    assert listed.returncode == 0, listed.stderr
    assert f"{mine}: 2 rows for 127.0.0.1:{chclient.parse_url(clickhouse.url).port}/event_sink" in listed.stdout
    assert f"{theirs}: 4 rows for 127.0.0.1:1/event_sink" in listed.stdout
    assert "2 spill file(s), 6 rows" in listed.stdout

    done = replay_spill("replay", *folder)  # every file meant for this destination, and only those
    assert done.returncode == 0, done.stderr
    assert f"replayed 2 rows from {mine} into 127.0.0.1:" in done.stdout and "kept 1 file(s)" in done.stdout
    assert rows_of(ch, "t-dest-7") == 2 and not mine.exists() and theirs.exists()

    refused = replay_spill("replay", str(theirs), *folder)
    assert refused.returncode == 2 and f"error: {theirs} was meant for 127.0.0.1:1/event_sink" in refused.stderr
    assert rows_of(ch, "t-dest-8") == 0 and theirs.exists()
    forced = replay_spill("replay", str(theirs), "--force", *folder)
    assert forced.returncode == 0 and rows_of(ch, "t-dest-8") == 4 and not theirs.exists()

    gone = spill_rows(DEAD, tmp_path, "t-dest-9", n=1)
    assert replay_spill("discard", *folder).returncode == 2  # discarding names its files (or --all)
    dropped = replay_spill("discard", str(gone), *folder)
    assert dropped.returncode == 0 and f"discarded 1 rows: {gone}" in dropped.stdout and not gone.exists()


def test_the_suites_monitors_never_spill_into_the_checkout(tmp_path):
    checkout = Path(settings.SPILL_DIR.default)
    before = sorted(checkout.rglob("*")) if checkout.exists() else []
    rid = f"t-no-checkout-{uuid.uuid4().hex[:6]}"
    out = Output(locust(["--run-time", "1s", "--monitor-interval", "0.5", "--clickhouse-url", DEAD,
                         "--clickhouse-connect-timeout", "0.5"], env={"LOCUST_RUN_ID": rid}))
    assert out.wait() == 0, out.text[-3000:]
    assert (Path(os.environ["LOCUST_SPILL_DIR"]) / f"{rid}.spill.jsonl").exists()  # the session's folder (conftest)
    assert (sorted(checkout.rglob("*")) if checkout.exists() else []) == before
