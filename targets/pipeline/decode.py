"""Decoding with the libraries Open edX's consumers use: openedx-events' Avro deserializer."""

from __future__ import annotations

import json

from openedx_events.analytics.signals import TRACKING_EVENT_EMITTED
from openedx_events.event_bus.avro.deserializer import deserialize_bytes_to_event_data


def tracking_event(avro: bytes) -> dict:
    """TrackingLogData (Avro) → the event dict eventtracking hands to ERB: name, timestamp, data, context."""
    log = deserialize_bytes_to_event_data(avro, TRACKING_EVENT_EMITTED)["tracking_log"]
    return {"name": log.name, "timestamp": log.timestamp.isoformat(), "data": json.loads(log.data or "{}"),
            "context": json.loads(log.context or "{}")}


def confluent_payload(value: bytes) -> bytes:
    """Strip Confluent's framing (magic byte 0 + 4-byte schema id), as its AvroDeserializer does."""
    if len(value) < 5 or value[0] != 0:
        raise ValueError("not in Confluent Schema Registry wire format (magic byte 0)")
    return value[5:]
