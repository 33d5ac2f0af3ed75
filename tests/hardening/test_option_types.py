"""Options are validated by their argparse types: a bad value from the command line, a LOCUST_* variable
or locust.conf stops Locust before it starts, with argparse's one line naming the option and the value."""

from __future__ import annotations

import pytest

from tests.helpers import run_locust

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
