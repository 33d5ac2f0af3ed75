"""Options are validated by their argparse types: a bad value from the command line, a LOCUST_* variable
or locust.conf stops Locust before it starts, with argparse's one line naming the option and the value."""

from __future__ import annotations

import subprocess
import sys

import pytest

from tests.helpers import REPO, run_locust

# (locustfile, command-line arguments, environment, the one error line)
CASES = {
    "kafka negative count": ("kafka", ["--kafka-messages", "-1"], {},
                             "locust: error: argument --kafka-messages: '-1': expected an integer >= 0"),
    "kafka acks from env": ("kafka", [], {"LOCUST_KAFKA_ACKS": "2"},
                            "locust: error: argument --kafka-acks: invalid choice: '2' "
                            "(choose from '0', '1', 'all', '-1')"),
    "kafka rate not a number": ("kafka", ["--kafka-rate", "fast"], {},
                                "locust: error: argument --kafka-rate: 'fast': expected a number >= 0"),
    "http zero fake users": ("http", ["--fake-users", "0"], {},
                             "locust: error: argument --fake-users: '0': expected an integer >= 1"),
    "mqtt negative rate from env": ("mqtt", [], {"LOCUST_MQTT_MESSAGE_RATE": "-5"},
                                    "locust: error: argument --mqtt-message-rate: '-5': expected a number >= 0"),
    "tracking zero poll interval": ("tracking", ["--e2e-poll-interval", "0"], {},
                                    "locust: error: argument --e2e-poll-interval: '0': expected a number > 0"),
    "tracking zero events": ("tracking", ["--num-events", "0"], {},
                             "locust: error: argument --num-events: '0': expected an integer >= 1"),
    "tracking negative processes from env": ("tracking", [], {"LOCUST_TRACKING_PROCESSES": "-1"},
                                             "locust: error: argument --tracking-processes: '-1': "
                                             "expected an integer >= 0"),
    "mqtt inflight above paho's limit": ("mqtt", ["--mqtt-max-inflight", "70000"], {},
                                         "locust: error: argument --mqtt-max-inflight: '70000': "
                                         "expected an integer 1 … 65535 (paho's limit)"),
    "mqtt keepalive not a number": ("mqtt", ["--mqtt-keepalive", "1m"], {},
                                    "locust: error: argument --mqtt-keepalive: '1m': expected an integer >= 0"),
    "mqtt zero connect timeout": ("mqtt", ["--mqtt-connect-timeout", "0"], {},
                                  "locust: error: argument --mqtt-connect-timeout: '0': expected a number > 0"),
    "http negative wait": ("http", ["--wait-min", "-1"], {},
                           "locust: error: argument --wait-min: '-1': expected a number >= 0"),
    "ralph zero concurrency": ("tracking", ["--ralph-concurrency", "0"], {},
                               "locust: error: argument --ralph-concurrency: '0': expected an integer >= 1"),
    "capacity step zero": ("http", ["--capacity-step", "0"], {},
                           "locust: error: argument --capacity-step: '0': expected an integer >= 1"),
    "capacity fail ratio from env": ("mqtt", [], {"LOCUST_CAPACITY_FAIL_RATIO": "1"},
                                     "locust: error: argument --capacity-fail-ratio: '1': expected a number >= 0 "
                                     "and < 1"),
    "rate search tolerance": ("tracking", ["--capacity-backlog-tolerance", "0"], {},
                              "locust: error: argument --capacity-backlog-tolerance: '0': expected a number > 0 "
                              "and < 1"),
    "sar interval zero": ("http", ["--sar-interval", "0"], {},
                          "locust: error: argument --sar-interval: '0': expected an integer >= 1"),
    "check fail ratio above 1": ("kafka", ["--check-fail-ratio", "2"], {},
                                 "locust: error: argument --check-fail-ratio: '2': expected a number from 0 to 1"),
    "check min rate of 1": ("tracking", [], {"LOCUST_CHECK_MIN_RATE": "1"},
                            "locust: error: argument --check-min-rate: '1': expected a number >= 0 and < 1"),
    "sink timeout zero": ("mqtt", ["--clickhouse-connect-timeout", "0"], {},
                          "locust: error: argument --clickhouse-connect-timeout: '0': expected a number > 0"),
    "vector lines": ("tracking", ["--vector-lines", "all"], {},
                     "locust: error: argument --vector-lines: invalid choice: 'all' (choose from 'xapi', 'tracking', "
                     "'both')"),
}


@pytest.mark.parametrize("case", CASES)
def test_a_bad_value_is_argparse_one_line(case, tmp_path):
    locustfile, args, env, line = CASES[case]
    config = tmp_path / "empty.conf"  # no locust.conf from the checkout or home folder
    config.write_text("")
    done = run_locust(["-f", f"locustfiles/{locustfile}.py", "--config", str(config), "--headless", *args],
                      env=env, timeout=60)
    assert done.returncode == 2, done.stderr[-2000:]
    assert done.stderr.splitlines()[-1] == line, done.stderr[-2000:]
    assert "Traceback" not in done.stderr


def test_a_bad_value_in_locust_conf_names_the_option(tmp_path):
    config = tmp_path / "locust.conf"
    config.write_text("kafka-processes = -2\n")
    done = run_locust(["-f", "locustfiles/kafka.py", "--config", str(config), "--headless"], timeout=60)
    assert done.returncode == 2, done.stderr[-2000:]
    assert done.stderr.splitlines()[-1] == ("locust: error: argument --kafka-processes: '-2': "
                                            "expected an integer >= 0")


def test_the_standalone_monitor_types_its_options_too():
    done = subprocess.run([sys.executable, "-m", "monitors", "--wait-timeout", "-1"], cwd=REPO, capture_output=True,
                          text=True, timeout=60)
    assert done.returncode == 2, done.stderr[-2000:]
    assert done.stderr.splitlines()[-1] == ("python -m monitors: error: argument --wait-timeout: '-1': "
                                            "expected a number >= 0")
