"""Per-test options of the web UI's start form: marked as Locust marks its own, checked and typed."""

from __future__ import annotations

import argparse
from types import SimpleNamespace

from plumbing import web_options
from plumbing.options import ratio


def _parser():
    parser = argparse.ArgumentParser()
    group = parser.add_argument_group("checks")
    p95 = web_options.per_test(group.add_argument("--check-p95-ms", type=float, default=None))
    rate = web_options.per_test(group.add_argument("--rate-per-s", type=float, default=0.0))
    mode = web_options.per_test(group.add_argument("--mode-x", choices=("a", "b"), default="a"))
    secret = web_options.per_test(group.add_argument("--token-x", default=""), secret=True)
    hidden = group.add_argument("--hidden-x", default="")
    return p95, rate, mode, secret, hidden


def test_a_marked_option_carries_the_flags_locust_reads():
    p95, _rate, _mode, secret, hidden = _parser()
    assert (p95.include_in_web_ui, p95.is_secret, p95.is_required, p95.is_multiple) == (True, False, False, False)
    assert secret.is_secret
    assert not hasattr(hidden, "include_in_web_ui")  # Locust shows only what is marked


def test_a_bad_value_from_the_form_is_one_line_naming_it():
    _parser()
    assert web_options.check_form({"check_p95_ms": "fast"}) == "error: --check-p95-ms 'fast': expected a number"
    assert web_options.check_form({"rate_per_s": ""}) == "error: --rate-per-s: empty, expected a number"
    assert web_options.check_form({"mode_x": "c"}) == "error: --mode-x 'c': expected one of a, b"
    assert web_options.check_form({"check_p95_ms": "", "rate_per_s": "5", "mode_x": "b", "other": "?"}) is None


def test_a_value_the_options_validator_refuses_is_one_line_naming_it():
    parser = argparse.ArgumentParser()
    web_options.per_test(parser.add_argument("--share-x", type=ratio, default=None))
    assert web_options.check_form({"share_x": "2"}) == "error: --share-x '2': expected a number from 0 to 1"
    assert web_options.check_form({"share_x": "0.5"}) is None


def test_the_form_shows_help_with_its_default_written_out():
    parser = argparse.ArgumentParser(prog="locust")
    rate = web_options.per_test(parser.add_argument("--pace-x", type=float, default=2.5,
                                                    help="events/s (default %(default)s)"))
    assert rate.help == "events/s (default 2.5)"  # what the web UI shows
    assert "events/s (default 2.5)" in parser.format_help()


def test_values_left_as_text_by_locust_become_typed_at_the_start():
    _parser()
    # Locust keeps the text of an option whose value was None; "" clears a threshold.
    options = SimpleNamespace(check_p95_ms="250", rate_per_s=5.0, mode_x="b", token_x="t")
    web_options.coerce(options)
    assert options.check_p95_ms == 250.0 and options.rate_per_s == 5.0 and options.mode_x == "b"
    cleared = SimpleNamespace(check_p95_ms="", rate_per_s=1.0, mode_x="a", token_x="")
    web_options.coerce(cleared)
    assert cleared.check_p95_ms is None
