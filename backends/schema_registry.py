"""Register the kafka_bus Avro schemas in a Confluent Schema Registry and return their ids.

event-bus-kafka's consumers look up the schema id in each message's Confluent framing, so a load
test against a real Open edX Kafka bus must use ids the registry knows. Subjects follow Confluent's
TopicNameStrategy, as event-bus-kafka's serializers do: `<topic>-value` and `<topic>-key`.
Registering an already-registered schema returns its existing id (the registry's own rule).
Credentials: SCHEMA_REGISTRY_API_KEY / SCHEMA_REGISTRY_API_SECRET (or event-bus-kafka's
EVENT_BUS_KAFKA_SCHEMA_REGISTRY_API_KEY / _SECRET), never an option value.
"""

from __future__ import annotations

import base64
import json
import os
import urllib.error
import urllib.parse
import urllib.request

from openedx_erb.wire import KEY_SCHEMA, TRACKING_SCHEMA
from plumbing.redaction import redact

CONTENT_TYPE = "application/vnd.schemaregistry.v1+json"


def _credentials() -> tuple[str, str] | None:
    for prefix in ("SCHEMA_REGISTRY_API", "EVENT_BUS_KAFKA_SCHEMA_REGISTRY_API"):
        key, secret = os.environ.get(f"{prefix}_KEY"), os.environ.get(f"{prefix}_SECRET")
        if key and secret:
            return key, secret
    return None


def register(url: str, subject: str, schema: dict, timeout: float = 10.0) -> int:
    """POST /subjects/<subject>/versions; the schema's id."""
    body = json.dumps({"schema": json.dumps(schema, separators=(",", ":"))}).encode()
    req = urllib.request.Request(f"{url.rstrip('/')}/subjects/{urllib.parse.quote(subject, safe='')}/versions",
                                 data=body, method="POST", headers={"Content-Type": CONTENT_TYPE,
                                                                    "Accept": CONTENT_TYPE})
    creds = _credentials()
    if creds:
        req.add_header("Authorization", "Basic " + base64.b64encode(":".join(creds).encode()).decode())
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            return int(json.loads(resp.read())["id"])
    except urllib.error.HTTPError as exc:
        detail = exc.read()[:200].decode(errors="replace")
        raise ValueError(f"schema registry {redact(url)} refused subject {subject!r}: HTTP {exc.code} {detail}") \
            from None
    except (urllib.error.URLError, OSError) as exc:
        raise ValueError(f"schema registry {redact(url)} unreachable: {getattr(exc, 'reason', exc)}") from None
    except (KeyError, ValueError, TypeError):
        raise ValueError(f"schema registry {redact(url)}: answer without a schema id for {subject!r}") from None


def register_tracking_schemas(url: str, topic: str) -> tuple[int, int]:
    """(value schema id, key schema id) of the kafka_bus messages on `topic`."""
    return register(url, f"{topic}-value", TRACKING_SCHEMA), register(url, f"{topic}-key", KEY_SCHEMA)
