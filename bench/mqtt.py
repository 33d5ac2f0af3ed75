"""MQTT benchmark: publish msgs/s per process at QoS 0 and 1 against native publishers, and the most
devices one process keeps connected at the model's normal rate.

Publishers, each one process against the same local Mosquitto: (a) `mosquitto_pub -l` (C,
libmosquitto) sending N lines, (b) a plain paho-mqtt loop (loop_start thread, window of in-flight
messages), (c) the suite: 10 Locust users, each a generators/mqtt_client.Device publishing
lamp/changed with 100 in flight, every publish a Locust request timed to PUBACK (QoS 1) or to the
socket write (QoS 0). Goals: QoS0 >= 20,000/s and QoS1 >= 9,000/s for (c). Beside the rates, the CPU
per message of (b) and (c) (the suite's net of a 3 s run of the same program, so start-up cancels out):
steadier than a rate, which for (b) depends on a free core for paho's network thread.
Devices: locustfiles/mqtt.py, profile normal, BENCH_MQTT_DEVICES users (default 2000,10000,19000) at
spawn rate 500, run long enough for every device to connect; counts devices connected and failures.
Each device is a socket, so the process's file limit (printed) caps the count.
"""

from __future__ import annotations

import csv
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from stack import Stack

REPO = Path(__file__).resolve().parent.parent
LOCUST = str(Path(sys.executable).with_name("locust"))
N = int(os.environ.get("BENCH_MQTT_MESSAGES", "200000"))
SECONDS = int(os.environ.get("BENCH_SECONDS", "15"))
DEVICES = [int(x) for x in os.environ.get("BENCH_MQTT_DEVICES", "2000,10000,19000").split(",") if x]


class Counter:
    """A subscriber counting what the broker delivered on a topic (its own paho thread)."""

    def __init__(self, host: str, port: int, topic: str) -> None:
        import paho.mqtt.client as mqtt
        from paho.mqtt.enums import CallbackAPIVersion

        self.n = 0
        ready = threading.Event()
        self.c = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"count-{os.getpid()}-{time.time()}")
        self.c.on_message = lambda *_a: setattr(self, "n", self.n + 1)
        self.c.on_subscribe = lambda *_a: ready.set()
        self.c.on_connect = lambda c, *_a: c.subscribe(topic, 1)
        self.c.connect(host, port)
        self.c.loop_start()
        if not ready.wait(10):
            raise RuntimeError("counting subscriber: no SUBACK")

    def settle(self) -> int:
        """The count once nothing more arrives for 2 s."""
        last, since = -1, time.monotonic()
        while time.monotonic() - since < 2:
            if self.n != last:
                last, since = self.n, time.monotonic()
            time.sleep(0.1)
        self.c.disconnect()
        self.c.loop_stop()
        return self.n


def mosquitto_pub(host: str, port: int, qos: int, tmp: Path) -> tuple[float, int]:
    """(msgs/s, messages the broker delivered): mosquitto_pub -l may exit before its QoS 1 queue is sent."""
    data = tmp / "lines.txt"
    if not data.exists():
        data.write_text('{"on":true,"color":{"h":0.5,"s":1.0},"brightness":0.8,"client":"bench"}\n' * N)
    topic = f"devices/bench-native-{qos}/lamp/changed"
    counter = Counter(host, port, topic)
    t0 = time.perf_counter()
    with open(data) as f:
        subprocess.run(["mosquitto_pub", "-h", host, "-p", str(port), "-t", topic, "-l",
                        "-q", str(qos)], stdin=f, check=True, timeout=600)
    elapsed = time.perf_counter() - t0
    delivered = counter.settle()
    return delivered / elapsed, delivered


def plain_paho(host: str, port: int, qos: int) -> tuple[float, float]:
    """(msgs/s, µs of CPU per message: this process's, paho's network thread included)."""
    import paho.mqtt.client as mqtt
    from paho.mqtt.enums import CallbackAPIVersion

    done = threading.Semaphore(0)
    window = threading.Semaphore(1000)
    c = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"plain-{os.getpid()}")
    c.max_inflight_messages_set(1000)
    c.max_queued_messages_set(0)
    c.on_publish = lambda *_a: (window.release(), done.release())
    c.connect(host, port)
    c.loop_start()
    payload = b'{"on":true,"color":{"h":0.5,"s":1.0},"brightness":0.8,"client":"bench"}'
    t0, cpu0 = time.perf_counter(), time.process_time()
    for _ in range(N):
        window.acquire()
        c.publish("devices/bench/lamp/changed", payload, qos=qos)
    for _ in range(N):
        done.acquire()
    rate, cpu = N / (time.perf_counter() - t0), time.process_time() - cpu0
    c.loop_stop()
    c.disconnect()
    return rate, cpu * 1e6 / N


def _children_cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def flood(host: str, port: int, qos: int, seconds: int, prefix: Path) -> tuple[float, int]:
    """(CPU seconds, publishes) of one run of the suite's flood locustfile."""
    env = {**os.environ, "BENCH_MQTT_QOS": str(qos), "BENCH_MQTT_HOST": host, "BENCH_MQTT_PORT": str(port)}
    cpu0 = _children_cpu()
    subprocess.run([LOCUST, "-f", str(REPO / "bench" / "locustfiles" / "mqtt_flood.py"), "--headless", "-u", "10",
                    "-r", "10", "-t", f"{seconds}s", "--csv", str(prefix), "--csv-full-history",
                    "--loglevel", "WARNING"], cwd=REPO, env=env, capture_output=True, timeout=seconds + 120)
    cpu = _children_cpu() - cpu0
    with open(f"{prefix}_stats.csv", newline="") as f:
        total = next(r for r in csv.DictReader(f) if r["Name"] == "Aggregated")
    return cpu, int(total["Request Count"])


def suite(host: str, port: int, qos: int, tmp: Path) -> tuple[float, float | None]:
    """(msgs/s over the steady part, µs of CPU per message net of a 3 s run; None if not measurable)."""
    short_cpu, short_n = flood(host, port, qos, 3, tmp / f"flood{qos}-short")
    prefix = tmp / f"flood{qos}"
    cpu, n = flood(host, port, qos, SECONDS, prefix)
    # Rate over the steady part: history rows after the ramp, the last row's total vs the first's.
    with open(f"{prefix}_stats_history.csv", newline="") as f:
        rows = [r for r in csv.DictReader(f) if r["Name"] == "Aggregated" and r["User Count"] == "10"]
    a, b = rows[2], rows[-1]
    rate = (int(b["Total Request Count"]) - int(a["Total Request Count"])) / max(float(b["Timestamp"]) -
                                                                                  float(a["Timestamp"]), 1)
    per = (cpu - short_cpu) * 1e6 / (n - short_n) if n > short_n and cpu > short_cpu else None
    return rate, per


def devices(url: str, n: int, tmp: Path) -> tuple[int, int, int]:
    prefix = tmp / f"devices{n}"
    # Connects slow down as the process fills (CONNECT p95 ~28 s at 19,000 here): a device still
    # waiting for CONNACK when the run ends is neither connected nor failed, so allow for them.
    run_time = n // 250 + 30
    subprocess.run([LOCUST, "-f", str(REPO / "locustfiles" / "mqtt.py"), "--headless", "-u", str(n), "-r", "500",
                    "-t", f"{run_time}s", "--mqtt-url", url, "--mqtt-profile", "normal", "--no-monitor",
                    "--no-sar", "--mqtt-no-sys", "--csv", str(prefix), "--loglevel", "WARNING"], cwd=REPO,
                   capture_output=True, timeout=run_time + 180)
    with open(f"{prefix}_stats.csv", newline="") as f:
        rows = {(r["Type"], r["Name"]): r for r in csv.DictReader(f)}
    conn = rows.get(("CONNECT", "connect"), {})
    pubs = sum(int(r["Request Count"]) for (t, _n), r in rows.items() if t.startswith("PUB"))
    return int(conn.get("Request Count", 0)) - int(conn.get("Failure Count", 0)), int(conn.get("Failure Count", 0)), pubs


def main() -> int:
    if not shutil.which("mosquitto_pub"):
        print("error: mosquitto_pub is not installed (make setup installs mosquitto-clients)", file=sys.stderr)
        return 2
    results: dict = {}
    with tempfile.TemporaryDirectory(prefix="bench-mqtt-") as tmp:
        stack = Stack(Path(tmp) / "stack", free_ports=True)
        try:
            ep = stack.start("mosquitto")["mosquitto"]
            for qos in (0, 1):
                native, delivered = mosquitto_pub(ep.host, ep.port, qos, Path(tmp))
                (paho, paho_cpu), (mine, mine_cpu) = plain_paho(ep.host, ep.port, qos), suite(ep.host, ep.port, qos,
                                                                                            Path(tmp))
                results[qos] = (native, paho, mine, delivered, paho_cpu, mine_cpu)
            held = [(n, *devices(ep.url, n, Path(tmp))) for n in DEVICES]
        finally:
            stack.stop()
    print(f"MQTT publishers, 1 process each, local Mosquitto 2.0, ~80 B lamp/changed payloads ({os.cpu_count()} cores)")
    print(f"{'publisher':<46}{'QoS 0 msg/s':>14}{'QoS 1 msg/s':>14}")
    labels = ("(a) mosquitto_pub -l (delivered msgs/s)", "(b) plain paho loop", "(c) suite Device, 10 users (Locust)")
    for i, label in enumerate(labels):
        print(f"{label:<46}{results[0][i]:>14,.0f}{results[1][i]:>14,.0f}")
    for qos, goal in ((0, 20_000), (1, 9_000)):
        a, b, c = results[qos][:3]
        delivered = results[qos][3]
        lost = f" (mosquitto_pub -l lost {N - delivered:,} of {N:,}: exits before its queue is sent)" \
            if delivered < N else ""
        print(f"QoS {qos}: c/a = {c / a:.2f}, c/b = {c / b:.2f}; goal c >= {goal:,}/s: "
              f"{'met' if c >= goal else 'NOT met'}{lost}")
        paho_cpu, mine_cpu = results[qos][4:]
        mine_text = f"{mine_cpu:.1f}" if mine_cpu is not None else "not measured (no more CPU than the 3 s run)"
        ratio = f"; CPU per message b/c = {paho_cpu / mine_cpu:.2f}" if mine_cpu else ""
        print(f"QoS {qos}: µs of CPU per message: (b) {paho_cpu:.1f}, (c) {mine_text}{ratio}")
    files = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    print(f"{'devices (profile normal)':<30}{'connected':>12}{'failed':>10}{'publishes':>12}"
          f"   (file limit {files:,} per process)")
    for n, ok, failed, pubs in held:
        print(f"{n:<30,}{ok:>12,}{failed:>10,}{pubs:>12,}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
