-- The raw xAPI table of the reference pipeline: Aspects' xapi.xapi_events_all (TCA migration 0032)
-- adapted so it runs on ClickHouse 18.16 as well as current ClickHouse: DateTime instead of
-- DateTime64(6) (18.16 has none; the statement's `timestamp` keeps the microseconds).
CREATE DATABASE IF NOT EXISTS {db};

CREATE TABLE IF NOT EXISTS {db}.{table}
(
    event_id      UUID,
    emission_time DateTime,
    event         String
)
ENGINE = ReplacingMergeTree
PARTITION BY toYYYYMM(emission_time)
ORDER BY (emission_time, event_id);
