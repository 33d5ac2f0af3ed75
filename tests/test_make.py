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
    assert "stack.packages" not in out and "ensure_venv" not in out, out  # no servers, no Ralph venv


@pytest.mark.skipif(MAKE is None, reason="make is not installed")
@pytest.mark.parametrize("target", ["http-test", "mqtt-test", "capacity", "demo"])
def test_a_target_that_starts_the_local_stack_installs_its_packages(tmp_path, target):
    out = dry_run(tmp_path, target)
    assert "python3 -m stack.packages stack" in out, out


@pytest.mark.skipif(MAKE is None, reason="make is not installed")
def test_mqtt_devices_connect_at_the_brokers_rate_unless_told_otherwise(tmp_path):
    # The HTTP targets' SPAWN_RATE=10 would spend 50 s of a 60 s run connecting 500 devices.
    assert "--users 500 --spawn-rate 100 " in dry_run(tmp_path, "mqtt-test", "MQTT_HOST=mqtt://broker.example.com")
    assert "--spawn-rate 25 " in dry_run(tmp_path, "mqtt-test", "MQTT_HOST=mqtt://broker.example.com", "SPAWN_RATE=25")


STACK_TARGETS = ["demo", "kafka-test", "pipeline-test", "pipeline-capacity", "http-test", "mqtt-test", "capacity"]


@pytest.mark.skipif(MAKE is None, reason="make is not installed")
@pytest.mark.parametrize("target", STACK_TARGETS)
def test_a_target_on_the_local_stack_is_one_command_around_which_python_runs_the_stack(tmp_path, target):
    # No trap/source/background shell: `python -m stack run` starts the stack, runs one command, stops it.
    def lines(*args: str) -> list[str]:
        return [line for line in dry_run(tmp_path, *args).replace("\\\n", " ").splitlines()
                if not line.startswith("make")]

    own = [line for line in lines(target) if line not in lines("setup", "browser")]
    assert len(own) == 1 and " -m stack run " in own[0], own
    assert not any(shell in own[0] for shell in (";", "&", "|", "trap ", "source ", "sleep ")), own


@pytest.mark.skipif(MAKE is None, reason="make is not installed")
@pytest.mark.parametrize("target", ["demo", "pipeline-test", "pipeline-capacity"])
def test_the_backend_is_the_users_or_the_runs_default_never_a_list_in_make(tmp_path, target):
    import backends

    def runs(*args: str) -> str:
        return "\n".join(line for line in dry_run(tmp_path, target, *args).replace("\\\n", " ").splitlines()
                         if "loadtesting." in line)

    assert not [name for name in backends.NAMES if name in runs()]  # python -m loadtesting.pipeline_run's default
    assert "vector" in runs("BACKEND=vector")

