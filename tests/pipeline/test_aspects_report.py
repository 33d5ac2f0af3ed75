"""Aspects' own load-test report query over the rows this suite writes.

The query is platform-plugin-aspects' (docs/how-tos/load_test_tracking_pipeline.rst, "Reporting on
Tests"), held here as test data, unchanged but for the database name. It needs current ClickHouse
(window functions, JSON_VALUE), so it runs on chDB over a run's rows copied from ClickHouse 18.16.
It divides row deltas by 5 s, the reference monitor's sample interval, and `arrayJoin`s the start
row's tags: a run without tags gives it no rows.
"""

from __future__ import annotations

import json
import uuid

from monitors import schema
from plumbing import chclient
from tests.helpers import REPO, log_of, run_locust
from tests.pipeline.conftest import generate

ASPECTS_REPORT = """
with starts as (
    select run_id, timestamp, stats, runs.extra,
            row_number() over (
                partition by run_id order by timestamp
            ) as rn
    from event_sink.load_test_stats stats
    inner join event_sink.load_test_runs runs
        on stats.run_id = runs.run_id
        and runs.event_type = 'start'
)

select run_id,
    timestamp,
    starts.timestamp as start_time,
    JSONExtractKeys(stats)[2] as backend,
    multiIf(
        backend = 'celery', JSON_VALUE(stats, '$.celery.lag'),
        backend = 'vector', JSON_VALUE(stats, '$.vector.lag'),
        backend = 'redis_bus', JSON_VALUE(stats, '$.redis_bus.lag'),
        backend = 'kafka_bus', JSON_VALUE(stats, '$.kafka_bus.lag'),
        ''
    ) as service_lag_1,
    if(service_lag_1 = '', '0', service_lag_1) as service_lag,
    JSON_VALUE(stats, '$.clickhouse.lag_seconds') as clickhouse_lag,
    JSON_VALUE(stats, '$.clickhouse.total_rows')::Int - JSON_VALUE(starts.stats, '$.clickhouse.total_rows')::Int as clickhouse_rows,

    lagInFrame(clickhouse_rows, 1) over (PARTITION BY run_id, tags ORDER BY timestamp) as last_rows,
    (clickhouse_rows - last_rows) / 5 as rps,

    ceiling(dateDiff('second', starts.timestamp, timestamp)/5.0) * 5 as secs_into_test,
    trim(BOTH '"' FROM arrayJoin(JSONExtractArrayRaw(starts.extra, 'tags'))) tags,
    backend || ' (' || run_id || ', '|| start_time::String || ')' as name
from event_sink.load_test_stats stats
inner join starts on stats.run_id = starts.run_id
where starts.rn = 1;
"""  # noqa: E501 - Aspects' text as published


def copy_run_to_chdb(clickhouse, chdb_session, run_id: str, tmp_path) -> str:
    """The run's load_test_runs/load_test_stats rows, from ClickHouse 18.16 into a chDB database of their own."""
    db = f"event_sink_{uuid.uuid4().hex[:8]}"
    for sql in schema.statements(db):
        chdb_session.query(sql)
    client = chclient.connect(clickhouse.url)
    for table, cols in (("load_test_runs", "run_id, toUnixTimestamp(timestamp), event_type, extra"),
                        ("load_test_stats", "run_id, toUnixTimestamp(timestamp), stats")):
        names = list(schema.COLUMNS[table])
        rows = client.execute(f"SELECT {cols} FROM event_sink.{table} WHERE run_id = %(r)s", {"r": run_id})
        data = tmp_path / f"{table}.jsonl"
        data.write_text("".join(json.dumps(dict(zip(names, row, strict=True))) + "\n" for row in rows))
        structure = ", ".join(f"{n} {'DateTime' if n == 'timestamp' else 'String'}" for n in names)
        chdb_session.query(f"INSERT INTO {db}.{table} SELECT * FROM file('{data}', 'JSONEachRow', '{structure}')")
    client.disconnect()
    return db


def stats_samples(chdb_session, db: str) -> list[tuple[int, dict]]:
    """(epoch second, stats) of each load_test_stats row, in time order."""
    out = chdb_session.query(f"SELECT toUnixTimestamp(timestamp) AS t, stats FROM {db}.load_test_stats ORDER BY t",
                             "JSONEachRow")
    return [(int(r["t"]), json.loads(r["stats"])) for r in map(json.loads, str(out).splitlines())]


def aspects_report(chdb_session, db: str) -> list[dict]:
    out = str(chdb_session.query(ASPECTS_REPORT.replace("event_sink.", f"{db}."), "JSONEachRow"))
    return [json.loads(line) for line in out.splitlines() if line.strip()]


def test_aspects_report_query_reads_a_tagged_run_sampled_every_5_s(pipeline, clickhouse, redis_server, chdb_session,
                                                                   tmp_path):
    p = pipeline("redis_bus", "--batch-size", "100", "--batch-interval", "1")
    run_id = f"t-{uuid.uuid4().hex[:10]}"
    # conf/tracking.conf as a user runs it (its 5 s sampling included), pointed at this test's servers.
    done = run_locust(["--config", str(REPO / "conf" / "tracking.conf"), "--headless", "--run-id", run_id,
                       "--drain-timeout", "60", "--spill-dir", str(tmp_path), "--no-sar",
                       *p.generator_args(clickhouse, redis_server, None), "--num-events", "1500",
                       "--events-per-second", "100", "--run-tags", "aspects,erb"], timeout=240)
    assert done.returncode == 0, log_of(done.stderr)
    db = copy_run_to_chdb(clickhouse, chdb_session, run_id, tmp_path)
    samples = stats_samples(chdb_session, db)
    gaps = [b[0] - a[0] for a, b in zip(samples, samples[1:], strict=False)]
    assert len(samples) >= 3 and all(4 <= g <= 6 for g in gaps), gaps  # every 5 s, to the second
    report = aspects_report(chdb_session, db)
    assert {r["run_id"] for r in report} == {run_id}
    for tag in ("aspects", "erb"):
        rows = sorted((r for r in report if r["tags"] == tag), key=lambda r: r["timestamp"])
        assert len(rows) == len(samples) and {r["backend"] for r in rows} == {"redis_bus"}
        # Aspects' rate × its 5 s gives back the rows the samples saw arrive: all 1,500 statements.
        first, last = samples[0][1]["clickhouse"]["total_rows"], samples[-1][1]["clickhouse"]["total_rows"]
        assert last == 1500
        assert round(sum(float(r["rps"]) for r in rows) * 5) == last - first
        assert [int(r["clickhouse_rows"]) for r in rows] == [s["clickhouse"]["total_rows"] - first for _t, s in samples]


def test_an_untagged_run_writes_an_empty_tag_list_which_aspects_report_skips(pipeline, clickhouse, redis_server,
                                                                            chdb_session, tmp_path):
    p = pipeline("redis_bus", "--batch-size", "50", "--batch-interval", "1")
    done, end = generate(p, clickhouse, redis_server, None, "--num-events", "50", "--events-per-second", "100")
    assert done.returncode == 0, log_of(done.stderr)
    db = copy_run_to_chdb(clickhouse, chdb_session, end["run_id"], tmp_path)
    start = json.loads(str(chdb_session.query(f"SELECT extra FROM {db}.load_test_runs WHERE event_type = 'start'",
                                              "JSONEachRow")).splitlines()[0])["extra"]
    assert json.loads(start)["tags"] == []
    assert aspects_report(chdb_session, db) == []  # arrayJoin over no tags: tag runs you want in Aspects' report
