"""ClickHouse connections from a URL, the one way every part of the suite reaches ClickHouse.

URL form: ``clickhouse://user[:password]@host[:port]/database`` (native protocol, default
port 9000); ``clickhouses://`` for TLS. The password may instead come from the environment
(``CLICKHOUSE_PASSWORD``) or a file (``CLICKHOUSE_PASSWORD_FILE``) so it never sits in a
command line, a log or a report: `plumbing.redaction.redact` before printing a URL.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote, urlsplit

from plumbing.redaction import redact, remember


@dataclass(frozen=True)
class ClickHouseURL:
    host: str
    port: int
    user: str
    password: str
    database: str
    secure: bool

    def kwargs(self) -> dict:
        """Keyword arguments for `clickhouse_driver.Client`."""
        return {"host": self.host, "port": self.port, "user": self.user, "password": self.password,
                "database": self.database, "secure": self.secure}


def parse_url(url: str) -> ClickHouseURL:
    """Parse `url`; a bad one raises ValueError naming it (redacted) and the expected form."""
    parts = urlsplit(url)
    if parts.scheme not in ("clickhouse", "clickhouses") or not parts.hostname:
        raise ValueError(f"ClickHouse URL {redact(url)!r} is not clickhouse://user[:password]@host[:port]/database")
    try:
        port = parts.port or (9440 if parts.scheme == "clickhouses" else 9000)
    except ValueError:
        raise ValueError(f"ClickHouse URL {redact(url)!r} has a bad port; expected a number 1-65535") from None
    password = unquote(parts.password or "")
    if not password and os.environ.get("CLICKHOUSE_PASSWORD"):
        password = os.environ["CLICKHOUSE_PASSWORD"]
    elif not password and os.environ.get("CLICKHOUSE_PASSWORD_FILE"):
        try:
            password = Path(os.environ["CLICKHOUSE_PASSWORD_FILE"]).read_text().strip()
        except OSError as exc:
            raise ValueError(f"CLICKHOUSE_PASSWORD_FILE {os.environ['CLICKHOUSE_PASSWORD_FILE']!r} cannot be read: "
                             f"{exc.strerror}") from None
    remember(password)
    return ClickHouseURL(
        host=parts.hostname,
        port=port,
        user=unquote(parts.username or "default"),
        password=password,
        database=parts.path.lstrip("/") or "default",
        secure=parts.scheme == "clickhouses",
    )


def connect(url: str, connect_timeout: float = 3, send_receive_timeout: float = 30, **settings):
    """A `clickhouse_driver.Client` for `url` (connects lazily, on first query); a server that stops
    answering fails a call after `send_receive_timeout` s (one that refuses, after `connect_timeout`).

    Rows go in as data: ``client.execute("INSERT INTO t VALUES", rows)`` (inline VALUES hang on 18.16).
    """
    from clickhouse_driver import Client

    return Client(**parse_url(url).kwargs(), settings=settings or None, connect_timeout=connect_timeout,
                  send_receive_timeout=send_receive_timeout, sync_request_timeout=min(5, send_receive_timeout))
