"""Kafka client settings from the environment, as the seed's tools take them, plus a properties file.

KAFKA_BROKERS   bootstrap servers (default 127.0.0.1:9092)
KAFKA_APIKEY    SASL credentials "user:password" (SASL_SSL; mechanism from KAFKA_SASL_MECHANISM,
                PLAIN by default, or SCRAM-SHA-256 / SCRAM-SHA-512)
KAFKA_CERT      CA file that signs the brokers' certificates (turns on SSL)
KAFKA_PROPERTIES  a librdkafka properties file (key=value lines), applied last

Secrets stay in the returned dict: never print or log it.
"""

from __future__ import annotations

import os
from pathlib import Path

from plumbing import settings

MECHANISMS = ("PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512")


def read_properties(path: str | Path) -> dict[str, str]:
    out = {}
    try:
        text = Path(path).read_text()
    except OSError as exc:
        raise ValueError(f"Kafka properties file {str(path)!r} cannot be read: {exc.strerror}") from None
    for n, line in enumerate(text.splitlines(), 1):
        line = line.strip()
        if not line or line.startswith(("#", "!")):
            continue
        key, sep, value = line.partition("=")
        if not sep:
            raise ValueError(f"Kafka properties file {str(path)!r} line {n}: expected key=value")
        out[key.strip()] = value.strip()
    return out


# librdkafka (>= 2.4) postpones a partition's next fetch by fetch.queue.backoff.ms (default 1 s)
# once its local queue passes queued.min.messages, so a reader that empties the queue quickly then
# idles for the rest of that second: measured here 215k msgs/s with the default, 1.28M with 10 ms.
# Consumers that read messages start from these; KAFKA_PROPERTIES still overrides them.
READER_DEFAULTS = {"fetch.queue.backoff.ms": 10}


def client_config(brokers: str | None = None, env: dict | None = None) -> dict[str, str]:
    """librdkafka settings common to producers, consumers and admin clients."""
    env = os.environ if env is None else env
    conf = {"bootstrap.servers": settings.KAFKA_BROKERS.resolve(brokers, env)}
    apikey, cert = env.get("KAFKA_APIKEY"), env.get("KAFKA_CERT")
    if apikey:
        user, sep, password = apikey.partition(":")
        if not sep or not user:
            raise ValueError("KAFKA_APIKEY is not user:password")
        mechanism = env.get("KAFKA_SASL_MECHANISM", "PLAIN").upper()
        if mechanism not in MECHANISMS:
            raise ValueError(f"KAFKA_SASL_MECHANISM {mechanism!r}: expected one of {', '.join(MECHANISMS)}")
        conf.update({"security.protocol": "SASL_SSL" if cert or env.get("KAFKA_SSL", "1") != "0" else "SASL_PLAINTEXT",
                     "sasl.mechanism": mechanism, "sasl.username": user, "sasl.password": password})
    if cert:
        if not Path(cert).is_file():
            raise ValueError(f"KAFKA_CERT {cert!r} is not a readable CA file")
        conf["ssl.ca.location"] = cert
        conf.setdefault("security.protocol", "SSL")
    if env.get("KAFKA_PROPERTIES"):
        conf.update(read_properties(env["KAFKA_PROPERTIES"]))
    return conf
