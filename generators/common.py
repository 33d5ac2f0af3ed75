"""Shared by the locustfiles: the --host check."""

from __future__ import annotations

import socket
from urllib.parse import urlsplit

from plumbing.options import OptionError, require


def check_http_host(host: str, timeout: float = 5.0) -> None:
    """Exit in one line unless `host` is an http(s) URL whose server accepts a TCP connection.

    Checked once, before any user starts: otherwise every request of the run fails the same way.
    A host that goes away later is measured as failures, as any other outage.
    """
    from plumbing.redaction import redact

    shown = redact(host)
    try:
        parts = urlsplit(host)
        port = parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError:
        raise OptionError(f"--host {shown}: cannot connect (the port is not a number 1-65535)") from None
    require(parts.scheme in ("http", "https") and bool(parts.hostname),
            f"--host {shown}: cannot connect (not an http(s) URL; expected http[s]://host[:port])")
    try:
        infos = socket.getaddrinfo(parts.hostname, port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError):
        raise OptionError(f"--host {shown}: cannot connect (name not known: {parts.hostname})") from None
    reason = "no address"
    for family, kind, proto, _name, address in infos:
        try:
            with socket.socket(family, kind, proto) as sock:
                sock.settimeout(timeout)
                sock.connect(address)
                return
        except ConnectionRefusedError:
            reason = "connection refused"
        except TimeoutError:
            reason = f"no answer within {timeout:g} s"
        except OSError as exc:
            reason = (exc.strerror or str(exc)).lower()
    raise OptionError(f"--host {shown}: cannot connect ({reason})")
