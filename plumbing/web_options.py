"""Options a user sets per test in Locust's web UI ("Custom parameters" of its start form).

Locust shows an option there when it was added with its parser's own ``add_argument`` (its
``include_in_web_ui``, ``is_secret``); an option added to an argument group gets no such flag and
stays hidden (locust#2560). The suite keeps its groups for ``--help`` and marks the options that
take effect per test with `per_test`, the same flags Locust's ``add_argument`` sets.

The web UI posts text: Locust converts a value to the type of the option's current value, and
keeps it as text when that value is None. `typed` converts and checks every marked option before
a test starts (a bad value is an error in the UI, the process stays up), `coerce` puts typed values
into ``parsed_options`` at the test's start.
"""

from __future__ import annotations

import argparse

SHOWN: dict[str, argparse.Action] = {}  # dest -> action of the options marked per test
FIXED: dict[str, tuple[object, str]] = {}  # dest -> (its value, why) of those this process's run decides


def per_test(action: argparse.Action, *, secret: bool = False) -> argparse.Action:
    """Show `action` (returned by add_argument) among the web UI's custom parameters; a `secret`
    one in a masked field."""
    if action.help and "%(" in action.help:
        # Locust's start form shows the help as written (argparse expands it only for --help): expanded
        # once here, its percent signs escaped again for argparse.
        action.help = (action.help % {**vars(action), "prog": "locust"}).replace("%", "%%")
    action.include_in_web_ui = True
    action.is_secret = secret
    action.is_required = False
    action.is_multiple = False
    SHOWN[action.dest] = action
    return action


def flag(action: argparse.Action) -> str:
    return max(action.option_strings, key=len) if action.option_strings else action.dest


def typed(action: argparse.Action, text: str):
    """The value of `text` for `action`; ValueError names the option, the value and what was expected."""
    if isinstance(action.default, bool) or action.nargs == 0:
        return text == "true"
    if text.strip() == "" and action.type is not None:
        if action.default is None:
            return None  # a threshold left empty: none
        raise ValueError(f"{flag(action)}: empty, expected {_expected(action)}")
    value = text
    if action.type is not None:
        try:
            value = action.type(text)
        except argparse.ArgumentTypeError as exc:  # a validator of plumbing.options: "'<text>': expected …"
            raise ValueError(f"{flag(action)} {exc}") from None
        except (TypeError, ValueError):
            raise ValueError(f"{flag(action)} {text!r}: expected {_expected(action)}") from None
    if action.choices and value not in action.choices:
        raise ValueError(f"{flag(action)} {text!r}: expected one of {', '.join(map(str, action.choices))}")
    return value


def _expected(action: argparse.Action) -> str:
    return {int: "a whole number", float: "a number"}.get(action.type, "a value")


def fix(dest: str, value: object, why: str) -> None:
    """The marked option `dest` keeps `value` in this process (e.g. a capacity search sets the rate
    itself): a start form giving another value is refused with `why`, never silently overridden."""
    FIXED[dest] = (value, why)


def check_form(form) -> str | None:
    """The first bad value among the marked options of a posted start form, as an error line."""
    for dest, action in SHOWN.items():
        if dest in form:
            try:
                value = typed(action, form[dest])
            except ValueError as exc:
                return f"error: {exc}"
            if dest in FIXED and value != FIXED[dest][0]:
                return f"error: {flag(action)} {form[dest]}: {FIXED[dest][1]}"
    return None


def coerce(options) -> None:
    """Typed values for marked options the web UI left as text (those whose default is None)."""
    for dest, action in SHOWN.items():
        value = getattr(options, dest, None)
        if isinstance(value, str) and action.type not in (None, str):
            try:
                setattr(options, dest, typed(action, value))
            except ValueError:
                pass  # checked before the start (check_form); a value from elsewhere stays as given
