"""`python -m stack run SERVICES -- COMMAND`: the make targets' one command, the stack around a command."""

from __future__ import annotations

import os
import signal
import subprocess
import sys

from stack import free_port
from tests.helpers import REPO, wait_for

# Ends a second after Ctrl-C, as a run writing its folder and end rows does.
SLOW_TO_END = """
import pathlib, signal, sys, time
def ended(*_):
    time.sleep(1)
    pathlib.Path(sys.argv[1]).write_text("ended")
    sys.exit(3)
signal.signal(signal.SIGINT, ended)
pathlib.Path(sys.argv[2]).touch()
time.sleep(60)
"""


def test_ctrl_c_lets_the_command_end_as_it_decides_then_stops_the_stack(tmp_path):
    done_file = tmp_path / "ended"
    proc = subprocess.Popen([sys.executable, "-m", "stack", "run", "redis", "--run-dir", str(tmp_path / "stack"),
                             "--", sys.executable, "-c", SLOW_TO_END, str(done_file), str(tmp_path / "ready")],
                            cwd=REPO, env={**os.environ, "STACK_REDIS_PORT": str(free_port())},
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True)
    try:
        wait_for(lambda: proc.poll() is not None or (tmp_path / "ready").exists(), timeout=30, what="the command")
        os.killpg(proc.pid, signal.SIGINT)  # a terminal's Ctrl-C: the whole foreground group
        out = proc.communicate(timeout=30)[0]
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    assert done_file.read_text() == "ended", out  # not killed a quarter second into its end
    assert proc.returncode == 3, out  # the command's exit code
    assert not (tmp_path / "stack" / "stack.json").exists(), out  # the stack stopped
