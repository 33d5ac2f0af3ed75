"""Shared plumbing: ClickHouse client, Kafka/Redis connection settings, redaction, run ids,
percentiles and histograms, the blocking-call helper, logging set-up and one-line option errors.

Imports nothing from the rest of the suite: every other package may import it.
"""
