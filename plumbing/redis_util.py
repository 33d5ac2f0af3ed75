"""Redis URLs for the samplers: loopback by default, passwords never printed."""

from __future__ import annotations

from urllib.parse import urlsplit

from plumbing import settings
from plumbing.redaction import redact


def default_url() -> str:
    """LOCUST_REDIS_URL (the stack exports it), else Redis on its standard loopback port."""
    return settings.REDIS_URL.resolve()


def connect(url: str):
    import redis

    if urlsplit(url).scheme not in ("redis", "rediss", "unix"):
        raise ValueError(f"Redis URL {redact(url)!r} is not redis://[user:password@]host:port/db")
    return redis.Redis.from_url(url, socket_timeout=5, socket_connect_timeout=3, health_check_interval=30)
