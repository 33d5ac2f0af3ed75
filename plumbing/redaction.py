"""The one redaction of the suite: whatever is printed, logged or stored goes through here.

Secrets enter as URL passwords (``clickhouse://user:PASSWORD@…``, ``redis://:PASSWORD@…``,
``mqtt://…``), as options named like a secret (``--…-password``, ``apikey``, ``token``, ``secret``)
and as values from the environment or from files (``CLICKHOUSE_PASSWORD``, ``KAFKA_APIKEY``,
``LOCUST_*_PASSWORD``, ``--…-password-file``). Each becomes ``***``; the rest of a URL or
command line stays readable.
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Iterable, Mapping
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

MASK = "***"

# Names whose values are secrets; a *file* option holds a path, which is not.
_SECRET_NAME = re.compile(r"password|passwd|passphrase|api_?key|secret|token|credential|(^|_)pass$", re.I)
# scheme://userinfo@ in free text; userinfo runs to the last @ before the path.
_URL_USERINFO = re.compile(r"\b([A-Za-z][A-Za-z0-9+.-]*://)([^\s/?#@'\"\[\]]*(?:@[^\s/?#@'\"\[\]]*)*)@")
_MIN_SECRET = 4  # shorter values would mask ordinary words

_known: set[str] = set()


def is_secret_name(name: str) -> bool:
    """True for option / variable names that hold a secret value (not a path to one)."""
    name = name.lower().replace("-", "_")
    return bool(_SECRET_NAME.search(name)) and not name.endswith(("_file", "_path"))


def remember(secret: str | None) -> None:
    """Mask `secret` wherever it appears from now on (e.g. a password read from a file)."""
    if secret and len(secret) >= _MIN_SECRET:
        _known.add(secret)


def _env_secrets() -> set[str]:
    out = set()
    for key, value in os.environ.items():
        if value and is_secret_name(key):
            out.add(value)
            if key.upper().endswith("APIKEY") and ":" in value:  # KAFKA_APIKEY is user:password
                out.add(value.split(":", 1)[1])
    return {s for s in out if len(s) >= _MIN_SECRET}


def redact(url: str) -> str:
    """`url` with its password and any secret-named query value replaced by ***."""
    if not isinstance(url, str) or "://" not in url:
        return redact_text(url) if isinstance(url, str) else url
    try:
        parts = urlsplit(url)
        password = parts.password
    except ValueError:  # not a URL after all (e.g. a bad port): mask what looks like userinfo
        return redact_text(url)
    if not parts.scheme or not parts.netloc:  # a URL inside other text, e.g. --opt=redis://…
        return redact_text(url)
    netloc = parts.netloc
    if password is not None:
        userinfo, host = netloc.rsplit("@", 1)
        netloc = f"{userinfo.split(':', 1)[0]}:{MASK}@{host}"
    query = parts.query
    if query and any(is_secret_name(k) for k, _ in parse_qsl(query, keep_blank_values=True)):
        query = urlencode([(k, MASK if is_secret_name(k) else v) for k, v in parse_qsl(query, keep_blank_values=True)],
                          safe="*")
    return _mask_known(urlunsplit(parts._replace(netloc=netloc, query=query)))


def _userinfo(match: re.Match) -> str:
    userinfo = match.group(2)
    if ":" not in userinfo:
        return match.group(0)
    return f"{match.group(1)}{userinfo.split(':', 1)[0]}:{MASK}@"


def _mask_known(text: str) -> str:
    for secret in sorted(_known | _env_secrets(), key=len, reverse=True):
        if secret in text:
            text = text.replace(secret, MASK)
    return text


def redact_text(text: str) -> str:
    """Free text (a log line, an error) with URL passwords and every known secret value masked."""
    if "://" in text:
        text = _URL_USERINFO.sub(_userinfo, text)
    return _mask_known(text)


def redact_args(args: Iterable[str]) -> list[str]:
    """A command line fit to print: URLs redacted, the value of a secret-named option masked."""
    out: list[str] = []
    hide_next = False
    for arg in args:
        arg = str(arg)
        if hide_next:
            out.append(MASK)
            hide_next = False
            continue
        if arg.startswith("-"):
            name, eq, value = arg.partition("=")
            if is_secret_name(name.lstrip("-")):
                if eq:
                    out.append(f"{name}={MASK}")
                else:
                    out.append(arg)
                    hide_next = True
                continue
            if eq:
                out.append(f"{name}={redact(value)}")
                continue
        out.append(redact(arg))
    return out


def redact_options(options: Mapping) -> dict:
    """Options (e.g. ``vars(parsed_options)``) as stored with a run: secrets masked."""
    out = {}
    for key, value in options.items():
        if is_secret_name(str(key)):
            value = MASK if value else value
        elif isinstance(value, str):
            value = redact(value)
        elif isinstance(value, (list, tuple)):
            value = [redact(v) if isinstance(v, str) else v for v in value]
        out[key] = value
    return out


class RedactingFilter(logging.Filter):
    """A handler filter: every record's message is redacted before it is written."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        clean = redact_text(message)
        if clean != message:
            record.msg, record.args = clean, None
        if record.exc_info and not record.exc_text:
            # Formatters use a ready exc_text as is: a traceback is written, but redacted.
            record.exc_text = redact_text(_FORMATTER.formatException(record.exc_info))
        return True


_FORMATTER = logging.Formatter()


def where(url: str | None) -> str:
    """host[:port] of a URL or broker list: credentials in a URL never reach a report."""
    if not url:
        return ""
    hosts = []
    for part in str(url).split(","):
        u = urlsplit(part if "://" in part else f"//{part}")
        if u.hostname:
            hosts.append(u.hostname + (f":{u.port}" if u.port else ""))
    return ",".join(hosts)
