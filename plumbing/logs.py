"""Logging set-up shared by every entry point (Locust plugin, `python -m monitors`, kafka_latency,
loadtesting.run, targets.pipeline): library loggers quieted, every line redacted."""

from __future__ import annotations

import logging

from plumbing.redaction import RedactingFilter

# Client libraries that log each failed (re)connection with a full traceback; the suite says
# it once, in its own words (e.g. the sink's "unreachable" / "back after" lines).
QUIET = {"clickhouse_driver": logging.CRITICAL, "urllib3": logging.ERROR, "kafka": logging.ERROR,
         "redis": logging.ERROR, "paho": logging.ERROR, "asyncio": logging.ERROR}


def setup() -> None:
    """Quiet the client libraries and redact secrets in every handler of the root logger (idempotent)."""
    for name, level in QUIET.items():
        logging.getLogger(name).setLevel(level)
    for handler in logging.getLogger().handlers:
        if not any(isinstance(f, RedactingFilter) for f in handler.filters):
            handler.addFilter(RedactingFilter())
