"""Host sampler: CPU, memory, disk and network of the machine the monitor runs on (psutil).

psutil reads each platform's own source (/proc on Linux, sysctl on macOS, the Windows APIs), so the
monitor runs wherever Locust runs. A figure the platform does not give (no /proc in a container,
no disk counters) is left out of the sample and said once in the log; it never stops the run.
"""

from __future__ import annotations

import logging
import os
import time

import psutil

log = logging.getLogger("monitors")

# Devices that are no disks (loop, RAM and device-mapper devices count their disks' bytes again).
NOT_DISKS = ("loop", "ram", "dm-")


def add_arguments(group) -> None:
    group.add_argument("--host-disk-path", default="/", env_var="LOCUST_HOST_DISK_PATH",
                       help="filesystem whose usage the host sampler reports (default /)")


def _cpu_times() -> tuple[float, float]:
    """(total, idle) CPU seconds: idle counts iowait; guest time is already in user time."""
    t = psutil.cpu_times()
    idle = t.idle + getattr(t, "iowait", 0.0)
    total = sum(t) - getattr(t, "guest", 0.0) - getattr(t, "guest_nice", 0.0)
    return total, idle


def _disk_bytes() -> tuple[int, int]:
    """Bytes read and written by whole disks (psutil's total leaves out partitions)."""
    total = psutil.disk_io_counters(perdisk=False)
    if total is None:  # no disk counters on this machine
        raise OSError("no disk counters")
    read, written = total.read_bytes, total.write_bytes
    for name, d in (psutil.disk_io_counters(perdisk=True) or {}).items():
        if name.startswith(NOT_DISKS):
            read, written = read - d.read_bytes, written - d.write_bytes
    return max(read, 0), max(written, 0)


def _net_bytes() -> tuple[int, int]:
    """Bytes received and sent on every interface but loopback."""
    rx = tx = 0
    for name, n in psutil.net_io_counters(pernic=True).items():
        if name == "lo" or name.startswith("lo0") or "loopback" in name.lower():
            continue
        rx += n.bytes_recv
        tx += n.bytes_sent
    return rx, tx


class Sampler:
    name = "host"
    drains = False  # nothing to drain: never holds up the end of a run

    def __init__(self, disk_path: str = "/") -> None:
        self.disk_path = disk_path
        self.missing: set[str] = set()  # figures this platform did not give (said once)
        self._last = self._counters()

    def _read(self, what: str, read):
        try:
            return read()
        except (OSError, RuntimeError, NotImplementedError, AttributeError) as exc:
            if what not in self.missing:
                self.missing.add(what)
                log.warning("monitor: the host's %s cannot be read here (%s); left out of the samples", what, exc)
            return None

    def _counters(self) -> dict:
        return {"t": time.monotonic(), "cpu": self._read("CPU times", _cpu_times),
                "disk": self._read("disk counters", _disk_bytes), "net": self._read("network counters", _net_bytes)}

    def sample(self) -> dict:
        now, last = self._counters(), self._last
        self._last = now
        dt = max(now["t"] - last["t"], 1e-6)
        out: dict = {}
        if now["cpu"] is not None and last["cpu"] is not None:
            total = now["cpu"][0] - last["cpu"][0]
            busy = total - (now["cpu"][1] - last["cpu"][1])
            out["cpu_percent"] = round(100.0 * busy / total, 1) if total > 0 else 0.0
        load = self._read("load average", psutil.getloadavg)
        if load is not None:
            out["load1"] = round(load[0], 2)
        out["cpus"] = psutil.cpu_count() or os.cpu_count()
        mem = self._read("memory figures", psutil.virtual_memory)
        if mem is not None:
            out["mem_total_bytes"], out["mem_available_bytes"] = mem.total, mem.available
        fs = self._read("disk usage", lambda: psutil.disk_usage(self.disk_path))
        if fs is not None:
            out["disk_free_bytes"], out["disk_used_percent"] = fs.free, round(fs.percent, 1)
        for key, (a, b) in (("disk", ("disk_read_bytes_per_s", "disk_write_bytes_per_s")),
                            ("net", ("net_rx_bytes_per_s", "net_tx_bytes_per_s"))):
            if now[key] is not None and last[key] is not None:
                out[a] = round((now[key][0] - last[key][0]) / dt)
                out[b] = round((now[key][1] - last[key][1]) / dt)
        return out

    def backlog(self, sample: dict) -> int | None:
        return None

    def close(self) -> None:
        pass


def from_options(options) -> Sampler:
    return Sampler(getattr(options, "host_disk_path", "/"))
