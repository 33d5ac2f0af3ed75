"""A free TCP port: for servers this suite starts (the stack, the reference pipeline's metrics)."""

from __future__ import annotations

import socket


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port that is free on `host` (an address of this machine) right now."""
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]
