"""One-line option errors: `error: <bad value>: expected ...`, a non-zero exit, no traceback."""

from __future__ import annotations


class OptionError(SystemExit):
    """A bad option: Locust exits with this one line (no traceback) and a non-zero code."""

    def __init__(self, message: str) -> None:
        super().__init__(f"error: {message}")


def require(ok: bool, message: str) -> None:
    """Exit with `message` (name the bad value and what was expected) unless `ok`."""
    if not ok:
        raise OptionError(message)
