"""Ctrl-C or SIGTERM before the planned end of a run with workers (--processes N, or Locust's master
and workers on one machine) is an interrupted run (130/143, one line) whichever process the signal
reached first; the end phases run once on the master and no process is left behind."""

from __future__ import annotations

import os
import re
import signal
import subprocess

import pytest

from stack import free_port
from tests.helpers import start_locust, wait_for
from tests.monitor.test_lifecycle import Output

LOCUSTFILE = "tests/lifecycle/dying_worker_locustfile.py"
PHASES = ["load_finished", "pipeline_draining", "pipeline_drained", "run_measured", "run_ending"]


@pytest.fixture
def started():
    """The processes a test starts: killed with their groups at its end (a failed wait leaves them running)."""
    procs: list[subprocess.Popen] = []
    yield procs
    for proc in procs:
        if proc.poll() is None:
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except ProcessLookupError:  # not a group's leader
                proc.kill()
            proc.wait()


def processes_run(started: list, run_time: str, env: dict | None = None) -> Output:
    port = str(free_port())  # the forked workers connect to --master-port; 5557 may be another run's
    started.append(proc := start_locust(["-f", LOCUSTFILE, "--headless", "--users", "4", "--spawn-rate", "10", "--run-time",
                                run_time, "--processes", "2", "--master-bind-port", port, "--master-port", port],
                               env=env))
    return Output(proc)


def wait_for_requests(out: Output) -> None:
    """The master's stats table counts requests: every worker's users are running."""
    wait_for(lambda: out.has(r"^TEST\s+work\s+[1-9]") or out.proc.poll() is not None, timeout=60,
             what="the workers' requests", on_timeout=lambda: out.text[-3000:])
    assert out.proc.poll() is None, out.text[-3000:]


def group_gone(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return True
    return False


def master_phases(out: Output) -> list[str]:
    return [m.group(1) for line in out.lines if (m := re.search(r"phase (\w+) on master", line))]


def assert_interrupted(out: Output, name: str, code: int) -> None:
    assert out.wait() == code, out.text[-4000:]
    assert out.count(rf"run stopped by {name} before its planned end; exit code {code}$") == 1, out.text[-4000:]
    assert out.has(rf"Shutting down \(exit code {code}\)")
    assert master_phases(out) == PHASES, out.text[-4000:]  # the end rows, once, on the master
    assert out.has(rf"phase run_ending on master \(exit code {code}, interrupted True\)")
    assert not out.has("before the run's end; the run went on without it"), out.text[-4000:]  # the signal, not a death


def assert_none_left(pgid: int) -> None:
    wait_for(lambda: group_gone(pgid), timeout=30, what="no process of the run left")


@pytest.mark.parametrize(("sig", "code"), [(signal.SIGINT, 130), (signal.SIGTERM, 143)], ids=["SIGINT", "SIGTERM"])
def test_a_signal_to_the_process_group_of_a_processes_run_interrupts_it(started, sig, code):
    out = processes_run(started, "60s")
    wait_for_requests(out)
    os.killpg(out.proc.pid, sig)  # what a terminal's Ctrl-C does: every process gets it
    assert_interrupted(out, sig.name, code)
    assert_none_left(out.proc.pid)


def test_a_signal_that_reached_only_the_forked_workers_interrupts_the_run(started):
    out = processes_run(started, "60s")
    wait_for_requests(out)
    children = subprocess.run(["pgrep", "-P", str(out.proc.pid)], capture_output=True, text=True).stdout.split()
    assert len(children) == 2, children
    for pid in children:
        os.kill(int(pid), signal.SIGINT)
    assert_interrupted(out, "SIGINT", 130)  # the master quits as its last worker did
    assert_none_left(out.proc.pid)


def test_a_signal_that_lands_while_a_worker_handles_a_message_interrupts_the_run(started, tmp_path):
    # Python runs the handler in whatever greenlet runs: here the worker's message greenlet, whose
    # death Locust counts as an error (exit code 2, "Unhandled exception in greenlet").
    out = processes_run(started, "60s", env={"BUSY_WORKER": str(tmp_path)})
    wait_for(lambda: len(list(tmp_path.glob("busy-*"))) == 2 or out.proc.poll() is not None, timeout=60,
             what="both workers busy with the master's message", on_timeout=lambda: out.text[-3000:])
    for busy in tmp_path.glob("busy-*"):
        os.kill(int(busy.name.removeprefix("busy-")), signal.SIGINT)
    (tmp_path / "release").touch()
    assert_interrupted(out, "SIGINT", 130)
    assert not out.has("Unhandled exception in greenlet"), out.text[-4000:]
    assert_none_left(out.proc.pid)


def test_ctrl_c_to_a_master_and_its_workers_on_one_machine_interrupts_the_run(started):
    port = str(free_port())  # a group of its own (the workers join it): what one terminal's Ctrl-C reaches
    started.append(proc := start_locust(["-f", LOCUSTFILE, "--headless", "--users", "4", "--spawn-rate", "10",
                                         "--run-time", "60s", "--master", "--expect-workers", "2",
                                         "--master-bind-port", port], start_new_session=False, process_group=0))
    master = Output(proc)
    workers = [start_locust(["-f", LOCUSTFILE, "--worker", "--master-port", port], start_new_session=False,
                            process_group=proc.pid, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
               for _ in range(2)]
    started.extend(workers)
    wait_for_requests(master)
    os.killpg(proc.pid, signal.SIGINT)
    assert_interrupted(master, "SIGINT", 130)
    assert [w.wait(timeout=30) for w in workers] == [0, 0]
    assert_none_left(proc.pid)


def test_a_processes_run_that_ended_as_planned_is_not_interrupted_by_a_signal_during_its_end(started, tmp_path):
    release = tmp_path / "release"
    out = processes_run(started, "2s", env={"HOLD_END": str(release)})
    wait_for(lambda: out.has("phase pipeline_draining on master") or out.proc.poll() is not None, timeout=60,
             what="the master's drain", on_timeout=lambda: out.text[-3000:])
    os.killpg(out.proc.pid, signal.SIGTERM)  # its workers were told to quit at the planned end
    # Locust's SIGTERM handler quits the master a second time, in the middle of its end
    wait_for(lambda: out.count("quitting on master") == 2 or out.proc.poll() is not None, timeout=30,
             what="the master to quit again", on_timeout=lambda: out.text[-3000:])
    release.touch()
    assert out.wait() == 0, out.text[-4000:]
    assert not out.has("before its planned end"), out.text[-4000:]
    assert master_phases(out) == PHASES, out.text[-4000:]  # the second quit waited for the end's rows
    assert out.has(r"phase run_ending on master \(exit code 0, interrupted False\)")


@pytest.mark.parametrize(("sig", "code"), [(signal.SIGINT, 130), (signal.SIGTERM, 143)], ids=["SIGINT", "SIGTERM"])
def test_a_headless_master_waiting_for_its_workers_quits_on_a_signal_and_tells_its_worker(started, sig, code):
    # Locust waits for --expect-workers before it has a SIGTERM handler, and Ctrl-C there was a
    # traceback that left the connected workers running.
    port = str(free_port())
    started.append(proc := start_locust(["-f", LOCUSTFILE, "--headless", "--users", "4", "--run-time", "60s",
                                         "--master", "--expect-workers", "2", "--master-bind-port", port]))
    master = Output(proc)
    started.append(worker := start_locust(["-f", LOCUSTFILE, "--worker", "--master-port", port],
                                          stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
    wait_for(lambda: master.has("1 workers connected") or proc.poll() is not None, timeout=60,
             what="the first worker", on_timeout=lambda: master.text[-3000:])
    proc.send_signal(sig)
    assert master.wait() == code, master.text[-4000:]
    assert master.count(rf"{sig.name} while waiting for workers \(1 of 2 ready\): no run started; exit code {code}$") == 1
    assert not master.has("Traceback"), master.text[-4000:]
    assert not master.has("phase "), master.text[-4000:]  # no run started: nothing to end
    assert worker.wait(timeout=30) == 0
