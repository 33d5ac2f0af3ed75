"""One-line option errors: `error: <bad value>: expected ...`, a non-zero exit, no traceback."""

from __future__ import annotations

import argparse


class OptionError(SystemExit):
    """A bad option: Locust exits with this one line (no traceback) and a non-zero code."""

    def __init__(self, message: str) -> None:
        super().__init__(f"error: {message}")


def require(ok: bool, message: str) -> None:
    """Exit with `message` (name the bad value and what was expected) unless `ok`."""
    if not ok:
        raise OptionError(message)


# argparse `type=` validators (as Locust's own argument_parser.py does): a bad value from the command line,
# a LOCUST_* variable or locust.conf exits with argparse's one line naming the option, the value and what
# was expected.
def _number(name: str, kind: type, test, expected: str):
    def convert(text: str):
        try:
            value = kind(text)
        except (TypeError, ValueError):
            raise argparse.ArgumentTypeError(f"{text!r}: expected {expected}") from None
        if not test(value):
            raise argparse.ArgumentTypeError(f"{text!r}: expected {expected}")
        return value

    convert.__name__ = name  # argparse names the type in its "invalid <name> value" errors
    return convert


positive_int = _number("positive_int", int, lambda v: v >= 1, "an integer >= 1")
non_negative_int = _number("non_negative_int", int, lambda v: v >= 0, "an integer >= 0")
positive_float = _number("positive_float", float, lambda v: v > 0, "a number > 0")
non_negative_float = _number("non_negative_float", float, lambda v: v >= 0, "a number >= 0")


def int_between(low: int, high: int, why: str = ""):
    """A `type=` validator for an integer from `low` to `high` (`why`: the bound's reason, e.g. "(paho's limit)")."""
    return _number("int_between", int, lambda v: low <= v <= high,
                   f"an integer {low} … {high}" + (f" {why}" if why else ""))


# Fractions: 0 <= f < 1 (a share that may be none but never all), 0 < f < 1, and a ratio 0 … 1.
fraction = _number("fraction", float, lambda v: 0 <= v < 1, "a number >= 0 and < 1")
positive_fraction = _number("positive_fraction", float, lambda v: 0 < v < 1, "a number > 0 and < 1")
ratio = _number("ratio", float, lambda v: 0 <= v <= 1, "a number from 0 to 1")
