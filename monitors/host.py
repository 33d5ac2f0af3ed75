"""Host sampler: CPU, memory, disk and network of the machine the monitor runs on (from /proc)."""

from __future__ import annotations

import os
import time


def add_arguments(group) -> None:
    group.add_argument("--host-disk-path", default="/", env_var="LOCUST_HOST_DISK_PATH",
                       help="filesystem whose usage the host sampler reports (default /)")


def _cpu_times() -> tuple[float, float]:
    with open("/proc/stat") as f:
        parts = [float(x) for x in f.readline().split()[1:]]
    idle = parts[3] + (parts[4] if len(parts) > 4 else 0.0)  # idle + iowait
    return sum(parts[:8]), idle


def _meminfo() -> dict[str, int]:
    out = {}
    with open("/proc/meminfo") as f:
        for line in f:
            key, value = line.split(":", 1)
            out[key] = int(value.split()[0]) * 1024
    return out


def _disk_bytes() -> tuple[int, int]:
    read = written = 0
    with open("/proc/diskstats") as f:
        for line in f:
            p = line.split()
            name = p[2]
            # Whole devices only (partitions would count twice); loop and ram devices are not disks.
            if name.startswith(("loop", "ram", "dm-")) or not os.path.exists(f"/sys/block/{name}"):
                continue
            read += int(p[5]) * 512
            written += int(p[9]) * 512
    return read, written


def _net_bytes() -> tuple[int, int]:
    rx = tx = 0
    with open("/proc/net/dev") as f:
        for line in f.readlines()[2:]:
            name, data = line.split(":", 1)
            if name.strip() == "lo":
                continue
            p = data.split()
            rx += int(p[0])
            tx += int(p[8])
    return rx, tx


class Sampler:
    name = "host"
    drains = False  # nothing to drain: never holds up the end of a run

    def __init__(self, disk_path: str = "/") -> None:
        self.disk_path = disk_path
        self._last = self._counters()

    @staticmethod
    def _counters() -> dict:
        total, idle = _cpu_times()
        dr, dw = _disk_bytes()
        rx, tx = _net_bytes()
        return {"t": time.monotonic(), "cpu_total": total, "cpu_idle": idle, "dr": dr, "dw": dw, "rx": rx, "tx": tx}

    def sample(self) -> dict:
        now, last = self._counters(), self._last
        self._last = now
        dt = max(now["t"] - last["t"], 1e-6)
        busy = (now["cpu_total"] - last["cpu_total"]) - (now["cpu_idle"] - last["cpu_idle"])
        total = now["cpu_total"] - last["cpu_total"]
        mem = _meminfo()
        fs = os.statvfs(self.disk_path)
        return {
            "cpu_percent": round(100.0 * busy / total, 1) if total > 0 else 0.0,
            "load1": round(os.getloadavg()[0], 2),
            "cpus": os.cpu_count(),
            "mem_total_bytes": mem.get("MemTotal", 0),
            "mem_available_bytes": mem.get("MemAvailable", 0),
            "disk_free_bytes": fs.f_bavail * fs.f_frsize,
            "disk_used_percent": round(100.0 * (1 - fs.f_bavail / fs.f_blocks), 1) if fs.f_blocks else 0.0,
            "disk_read_bytes_per_s": round((now["dr"] - last["dr"]) / dt),
            "disk_write_bytes_per_s": round((now["dw"] - last["dw"]) / dt),
            "net_rx_bytes_per_s": round((now["rx"] - last["rx"]) / dt),
            "net_tx_bytes_per_s": round((now["tx"] - last["tx"]) / dt),
        }

    def backlog(self, sample: dict) -> int | None:
        return None

    def close(self) -> None:
        pass


def from_options(options) -> Sampler:
    return Sampler(getattr(options, "host_disk_path", "/"))
