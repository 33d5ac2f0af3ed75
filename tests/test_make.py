"""The make targets install only what they need: against the user's own host, no Debian packages."""

from __future__ import annotations

import shutil
import subprocess

import pytest

from tests.helpers import REPO

MAKE = shutil.which("make")


def dry_run(tmp_path, *args: str) -> str:
    """`make -n` in the checkout with a PATH that holds none of the stack's programs (a laptop)."""
    done = subprocess.run([MAKE, "-n", "-C", str(REPO), *args], env={"PATH": str(tmp_path), "HOME": str(tmp_path)},
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    return done.stdout


@pytest.mark.skipif(MAKE is None, reason="make is not installed")
@pytest.mark.parametrize("args", [("http-test", "HOST=https://lampi.example.com"),
                                  ("mqtt-test", "MQTT_HOST=mqtt://broker.example.com:1883"),
                                  ("capacity", "HOST=https://lampi.example.com"),
                                  ("report",)])
def test_a_target_against_the_users_own_host_installs_no_packages(tmp_path, args):
    out = dry_run(tmp_path, *args)
    assert "apt-get" not in out and "ensure_venv" not in out, out  # no servers, no Ralph venv


@pytest.mark.skipif(MAKE is None, reason="make is not installed")
@pytest.mark.parametrize("target", ["http-test", "mqtt-test", "capacity", "demo"])
def test_a_target_that_starts_the_local_stack_installs_its_packages(tmp_path, target):
    out = dry_run(tmp_path, target)
    assert "apt-get install" in out, out


@pytest.mark.skipif(MAKE is None, reason="make is not installed")
def test_mqtt_devices_connect_at_the_brokers_rate_unless_told_otherwise(tmp_path):
    # The HTTP targets' SPAWN_RATE=10 would spend 50 s of a 60 s run connecting 500 devices.
    assert "--users 500 --spawn-rate 100 " in dry_run(tmp_path, "mqtt-test", "MQTT_HOST=mqtt://broker.example.com")
    assert "--spawn-rate 25 " in dry_run(tmp_path, "mqtt-test", "MQTT_HOST=mqtt://broker.example.com", "SPAWN_RATE=25")
