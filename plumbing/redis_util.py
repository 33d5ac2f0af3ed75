"""Redis URLs for the samplers: loopback by default, passwords never printed."""

from __future__ import annotations

import os
from urllib.parse import urlsplit

from plumbing.redaction import redact

DEFAULT_URL = "redis://127.0.0.1:6379/0"


def default_url() -> str:
    return os.environ.get("LOCUST_REDIS_URL") or DEFAULT_URL


def connect(url: str):
    import redis

    if urlsplit(url).scheme not in ("redis", "rediss", "unix"):
        raise ValueError(f"Redis URL {redact(url)!r} is not redis://[user:password@]host:port/db")
    return redis.Redis.from_url(url, socket_timeout=5, socket_connect_timeout=3, health_check_interval=30)
