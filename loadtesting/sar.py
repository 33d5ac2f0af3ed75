"""System activity of a run: `sadc` records it, `sadf` reads it back per phase.

While a run lasts, sysstat's collector writes CPU, memory, disk and network figures every
second into a binary file in the run folder (``sar.data``): the load generator's machine. When
the system under test is another host, record there too (``python -m loadtesting.sar record
FILE``, ``/usr/lib/sysstat/sadc -S XALL 1 FILE``, or over ssh from here: ``ssh HOST
/usr/lib/sysstat/sadc -S XALL 1 > results/<run-id>/sar-HOST.data``) and give the file to the
report with ``--sar-file`` (or leave it in the run folder as ``sar-*.data``): it is reported
beside the generator's, labelled by the host that recorded it.

    python -m loadtesting.sar record FILE [--interval 1]     # until Ctrl-C / SIGTERM
    python -m loadtesting.sar summary FILE [--start T --end T] # one table, epoch seconds or ISO
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import subprocess
import sys
import time
from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from plumbing.options import positive_int

SADC_PATHS = ("/usr/lib/sysstat/sadc", "/usr/lib64/sa/sadc", "/usr/libexec/sysstat/sadc", "/usr/lib/sa/sadc")
# sadf activity flags: CPU, memory, block devices, network interfaces.
ACTIVITIES = ("-u", "-r", "-d", "-n", "DEV")


class SarError(RuntimeError):
    pass


def add_arguments(parser) -> None:
    """The sar recording's options (a Locust parser: loadtesting.locust_plugin adds them)."""
    g = parser.add_argument_group("system activity (sar)")
    g.add_argument("--no-sar", action="store_true", default=False, env_var="LOCUST_NO_SAR",
                   help="do not record sar figures into the run folder")
    g.add_argument("--sar-interval", type=positive_int, default=1, env_var="LOCUST_SAR_INTERVAL",
                   help="seconds between sar records (default %(default)s)")


def interval(options) -> int | None:
    """Seconds between sar records (--sar-interval); None with --no-sar (or without these options)."""
    if options is None or getattr(options, "no_sar", True):
        return None
    return options.sar_interval


def sadc_path() -> str:
    for path in (shutil.which("sadc"), *SADC_PATHS):
        if path and Path(path).is_file():
            return path
    raise SarError("sysstat's sadc not found: install the Debian package sysstat (make setup does)")


def start(path: Path | str, interval: int = 1) -> subprocess.Popen:
    """Start recording into `path` (a new file) every `interval` seconds; stop with `stop()`."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.exists():
        path.unlink()  # sadc appends to an existing file only if it has the same layout
    # -S XALL: every activity including disks and interfaces; -F: create the file whatever its name.
    return subprocess.Popen([sadc_path(), "-F", "-S", "XALL", str(interval), str(path)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True)


def stop(proc: subprocess.Popen, timeout: float = 5.0, path: Path | str | None = None,
         covering: float | None = None, interval: int = 1) -> None:
    """Stop recording. Given the file and `covering` (epoch seconds, e.g. the run's end), first wait
    (at most two intervals) until sadc has written a record after that instant: under load sadc's
    records drift late, and stopping at once would lose the run's last seconds."""
    if proc.poll() is None and path is not None and covering is not None:
        deadline = time.monotonic() + 2 * interval + 1
        while proc.poll() is None and time.monotonic() < deadline:
            try:
                if os.stat(path).st_mtime > covering:
                    break
            except OSError:
                break
            time.sleep(0.05)  # gevent's sleep inside Locust (monkey-patched): the loop is not blocked
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@dataclass
class Row:
    time: float  # epoch seconds, end of the interval
    device: str  # CPU number, disk or interface; "" for memory
    values: dict[str, float]
    host: str = ""  # the machine that recorded it (sadf's hostname column)


def read(path: Path | str) -> dict[str, list[Row]]:
    """Every row of the file, keyed by activity: cpu, memory, disk, network."""
    if not shutil.which("sadf"):
        raise SarError("sadf not found: install the Debian package sysstat")
    proc = subprocess.run(["sadf", "-d", str(path), "--", *ACTIVITIES], capture_output=True, text=True)
    if proc.returncode != 0:
        raise SarError(f"sadf could not read {path}: {proc.stderr.strip() or proc.returncode}")
    return parse_sadf(proc.stdout)


def parse_sadf(text: str) -> dict[str, list[Row]]:
    """Parse `sadf -d` output: `# header` lines, then `host;interval;timestamp;device;figures…`."""
    out: dict[str, list[Row]] = defaultdict(list)
    header: list[str] = []
    activity = ""
    for line in text.splitlines():
        if line.startswith("# "):
            header = line[2:].split(";")
            columns = set(header)
            activity = ("cpu" if "%idle" in columns else "memory" if "kbmemfree" in columns
                        else "disk" if "tps" in columns else "network" if "IFACE" in columns else "other")
            continue
        if not line.strip() or not header:
            continue
        fields = line.split(";")
        stamp = datetime.strptime(fields[2].replace(" UTC", "+0000"), "%Y-%m-%d %H:%M:%S%z").timestamp()
        has_device = header[3] in ("CPU", "DEV", "IFACE")
        first = 4 if has_device else 3
        values = {}
        for name, raw in zip(header[first:], fields[first:], strict=False):
            try:
                values[name] = float(raw)
            except ValueError:
                pass
        out[activity].append(Row(stamp, fields[3] if has_device else "", values, fields[0]))
    return dict(out)


def hostname(rows: dict[str, list[Row]]) -> str:
    """The machine a file was recorded on ("" when it holds no row)."""
    return next((r.host for activity in rows.values() for r in activity if r.host), "")


def _mean(values: list[float]) -> float | None:
    return round(sum(values) / len(values), 2) if values else None


def summarize(rows: dict[str, list[Row]], start: float | None = None, end: float | None = None) -> dict:
    """Averages over [start, end] (epoch seconds; a row covers the second before its stamp)."""
    def within(r: Row) -> bool:
        return (start is None or r.time > start) and (end is None or r.time - 1 <= end)

    cpu = [r for r in rows.get("cpu", []) if within(r) and r.device in ("-1", "all")]
    mem = [r for r in rows.get("memory", []) if within(r)]
    disk = [r for r in rows.get("disk", []) if within(r)]
    net = [r for r in rows.get("network", []) if within(r)]

    def per_time_sum(items: list[Row], key: str, keep=lambda r: True) -> float | None:
        sums: dict[float, float] = defaultdict(float)
        for r in items:
            if keep(r):
                sums[r.time] += r.values.get(key, 0.0)
        return _mean(list(sums.values()))

    external = lambda r: r.device != "lo"  # noqa: E731
    return {
        "samples": len(cpu),
        "cpu_user": _mean([r.values.get("%user", 0.0) for r in cpu]),
        "cpu_system": _mean([r.values.get("%system", 0.0) for r in cpu]),
        "cpu_iowait": _mean([r.values.get("%iowait", 0.0) for r in cpu]),
        "cpu_idle": _mean([r.values.get("%idle", 0.0) for r in cpu]),
        "mem_used_pct": _mean([r.values.get("%memused", 0.0) for r in mem]),
        "disk_tps": per_time_sum(disk, "tps"),
        "disk_read_kBps": per_time_sum(disk, "rkB/s"),
        "disk_write_kBps": per_time_sum(disk, "wkB/s"),
        "disk_util_max": _mean([max((r.values.get("%util", 0.0) for r in disk if r.time == t), default=0.0)
                                for t in sorted({r.time for r in disk})]),
        "net_rx_kBps": per_time_sum(net, "rxkB/s", external),
        "net_tx_kBps": per_time_sum(net, "txkB/s", external),
        "loopback_kBps": per_time_sum(net, "rxkB/s", lambda r: r.device == "lo"),
    }


def _time_arg(text: str) -> float:
    try:
        return float(text)
    except ValueError:
        try:
            return datetime.fromisoformat(text).timestamp()
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r}: expected epoch seconds or an ISO time") from None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m loadtesting.sar", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    rec = sub.add_parser("record", help="record into FILE until stopped")
    rec.add_argument("file", type=Path)
    rec.add_argument("--interval", type=int, default=1)
    summ = sub.add_parser("summary", help="average figures of FILE over a window")
    summ.add_argument("file", type=Path)
    summ.add_argument("--start", type=_time_arg)
    summ.add_argument("--end", type=_time_arg)
    args = parser.parse_args(argv)
    try:
        if args.command == "record":
            if args.interval < 1:
                print(f"error: --interval {args.interval}: expected whole seconds >= 1", file=sys.stderr)
                return 2
            proc = start(args.file, args.interval)
            signal.signal(signal.SIGTERM, lambda *_: stop(proc))
            print(f"recording system activity every {args.interval} s into {args.file} (Ctrl-C stops)", flush=True)
            try:
                proc.wait()
            except KeyboardInterrupt:
                stop(proc)
            return 0
        if not args.file.is_file():
            print(f"error: sar file {args.file} not found", file=sys.stderr)
            return 2
        for key, value in summarize(read(args.file), args.start, args.end).items():
            print(f"{key:16} {value}")
        return 0
    except SarError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
