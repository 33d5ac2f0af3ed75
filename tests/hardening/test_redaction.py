"""The one redaction function: what it masks and what it keeps readable."""

from __future__ import annotations

import logging

import pytest

from plumbing.redaction import RedactingFilter, redact, redact_options, redact_text, remember


@pytest.mark.parametrize(("url", "shown"), [
    ("clickhouse://lt:s3cret@db:9000/default", "clickhouse://lt:***@db:9000/default"),
    ("clickhouses://lt:p%40ss@db/x", "clickhouses://lt:***@db/x"),
    ("redis://:s3cret@cache:6379/0", "redis://:***@cache:6379/0"),
    ("mqtts://lampi:s3cret@broker:8883", "mqtts://lampi:***@broker:8883"),
    ("http://lrs/xapi?token=s3cret&limit=5", "http://lrs/xapi?token=***&limit=5"),
    ("clickhouse://default@127.0.0.1:19000/default", "clickhouse://default@127.0.0.1:19000/default"),
    ("not a url", "not a url"),
])
def test_a_url_keeps_everything_but_its_secrets(url, shown):
    assert redact(url) == shown


def test_urls_inside_text_are_masked():
    assert redact_text("cannot reach redis://u:pw@h:1/0 nor clickhouse://a:b@c/d") == \
        "cannot reach redis://u:***@h:1/0 nor clickhouse://a:***@c/d"


def test_options_named_like_secrets_are_masked_but_paths_to_them_are_not():
    stored = redact_options({"ralph_password": "s3cret", "api_token": "t0ken", "mqtt_password_file": "/run/pw",
                             "clickhouse_url": "clickhouse://u:s3cret@h/db", "users": 5, "empty_password": ""})
    assert stored == {"ralph_password": "***", "api_token": "***", "mqtt_password_file": "/run/pw",
                      "clickhouse_url": "clickhouse://u:***@h/db", "users": 5, "empty_password": ""}


def test_secret_values_from_the_environment_and_files_are_masked_anywhere(monkeypatch):
    monkeypatch.setenv("KAFKA_APIKEY", "lt:kafka-s3cret")
    monkeypatch.setenv("CLICKHOUSE_PASSWORD", "ch-s3cret")
    remember("from-a-file-s3cret")
    assert redact_text("sasl kafka-s3cret, ch-s3cret and from-a-file-s3cret") == "sasl ***, *** and ***"


def test_a_log_record_is_redacted_before_any_handler_writes_it():
    record = logging.LogRecord("x", logging.WARNING, __file__, 1, "ClickHouse %s down", ("clickhouse://u:pw@h/d",),
                               None)
    RedactingFilter().filter(record)
    assert record.getMessage() == "ClickHouse clickhouse://u:***@h/d down"
