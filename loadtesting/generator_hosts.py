"""sar on every generator host of a distributed run, summarized per host with the master's run.

The master records its own host into the run folder (loadtesting.locust_plugin). A worker on another
host records its host into a temporary file from test start until its test stops, then sends the summary
(loadtesting.sar.summarize: CPU, memory, disk, network) to the master with Locust's worker messages;
the master keeps one per host, writes them to `sar-hosts.json` in the run folder and with the end row
(`generator_hosts`), and the report shows them per host. A worker on the master's own host (its
address towards the master is a loopback one, as with --processes) records nothing: the master's
recording covers that host.
"""

from __future__ import annotations

import ipaddress
import json
import logging
import shutil
import socket
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import gevent
from locust import events
from locust.runners import MasterRunner, WorkerRunner

from lifecycle import end
from lifecycle.end import add_run_extra
from loadtesting import sar
from plumbing import run_state, settings

log = logging.getLogger("loadtesting.generator_hosts")

REPORT_WAIT = 10.0  # s the master waits at its end for the workers' summaries
FILE = "sar-hosts.json"


@dataclass
class GeneratorHosts:
    """This process's part (plumbing.run_state)."""

    process: object = None  # worker: the sadc subprocess
    folder: Path | None = None  # worker: its temporary folder
    label: str = ""  # worker: "hostname address"
    summarizing: object = None  # worker: the greenlet stopping sadc and sending the summary
    expected: set = field(default_factory=set)  # master: hosts that announced a recording
    reports: dict[str, dict] = field(default_factory=dict)  # master: host -> sar summary


def host_label(master_host: str, master_port: int) -> tuple[str, bool]:
    """(hostname and the address this host reaches the master from, whether that address is loopback)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.connect((master_host, master_port))  # UDP: no packet is sent, the kernel picks the route
        addr = s.getsockname()[0]
    return f"{socket.gethostname()} {addr}", ipaddress.ip_address(addr).is_loopback


def _announce(environment, msg, **_kw) -> None:
    run_state.of(environment, GeneratorHosts).expected.add(msg.data)


def _report(environment, msg, **_kw) -> None:
    run_state.of(environment, GeneratorHosts).reports[msg.data["host"]] = msg.data["summary"]


@events.init.add_listener
def _init(environment, runner=None, **_kw) -> None:
    if isinstance(runner, MasterRunner):
        runner.register_message("generator_host_sar_start", _announce)
        runner.register_message("generator_host_sar", _report)


@events.test_start.add_listener
def _start(environment, **_kw) -> None:
    runner, o = environment.runner, environment.parsed_options
    rec = run_state.of(environment, GeneratorHosts)
    every = sar.interval(o)
    if not isinstance(runner, WorkerRunner) or every is None or rec.process is not None:
        return
    try:
        rec.label, local = host_label(o.master_host, o.master_port)
    except OSError as exc:
        log.warning("no sar on this worker's host: %s", exc)
        return
    if local:
        return
    rec.folder = Path(tempfile.mkdtemp(prefix="loadtest-sar-"))
    try:
        rec.process = sar.start(rec.folder / "sar.data", every)
    except sar.SarError as exc:
        log.warning("no sar on %s: %s", rec.label, exc)
        shutil.rmtree(rec.folder, ignore_errors=True)
        return
    runner.send_message("generator_host_sar_start", rec.label)


@events.test_stopping.add_listener
def _stopping(environment, **_kw) -> None:
    # While the users stop: a worker sends its last stats only after its test_stop listeners, and a
    # master that has those late loses them, so nothing here may hold test_stop up.
    rec = run_state.of(environment, GeneratorHosts)
    if rec.process is not None and rec.summarizing is None:
        rec.summarizing = gevent.spawn(_summarize, environment, rec)


def _summarize(environment, rec: GeneratorHosts) -> None:
    proc, rec.process = rec.process, None
    path = rec.folder / "sar.data"
    sar.stop(proc)
    try:
        summary = sar.summarize(sar.read(path))
    except sar.SarError as exc:
        summary = {"error": str(exc)}
    finally:
        shutil.rmtree(rec.folder, ignore_errors=True)
    environment.runner.send_message("generator_host_sar", {"host": rec.label, "summary": summary})


@events.test_stop.add_listener
def _stop(environment, **_kw) -> None:
    rec = run_state.of(environment, GeneratorHosts)
    if rec.summarizing is not None:
        rec.summarizing.join(timeout=1)  # done already unless the users stopped at once
        rec.summarizing = None


@end.run_measured.add_listener
def _measured(environment, **_kw) -> None:
    if not isinstance(environment.runner, MasterRunner):
        return
    rec = run_state.of(environment, GeneratorHosts)
    deadline = time.monotonic() + REPORT_WAIT
    while rec.expected - set(rec.reports) and time.monotonic() < deadline:
        gevent.sleep(0.05)  # the workers summarize their recording when their users have stopped
    if not rec.reports:
        return
    missing = sorted(rec.expected - set(rec.reports))
    if missing:
        log.warning("no sar summary from %s within %.0f s of the end", ", ".join(missing), REPORT_WAIT)
    hosts = {h: rec.reports[h] for h in sorted(rec.reports)}
    add_run_extra(environment, generator_hosts=hosts)
    folder = settings.RESULTS_DIR.resolve()
    if folder and Path(folder).is_dir():
        (Path(folder) / FILE).write_text(json.dumps(hosts, indent=1))
