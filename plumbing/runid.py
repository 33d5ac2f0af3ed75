"""Run ids: sortable by start time and collision-free across hosts and processes."""

from __future__ import annotations

import secrets
from datetime import UTC, datetime


def new_run_id(prefix: str = "") -> str:
    """E.g. ``20261124-142501-3fa9c2d1``: UTC start second plus 32 random bits."""
    stamp = datetime.now(UTC).strftime("%Y%m%d-%H%M%S")
    return f"{prefix}{stamp}-{secrets.token_hex(4)}"
