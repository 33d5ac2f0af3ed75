"""HTTP generator benchmark: requests/s per generator process against one nginx static server.

(a) wrk, one thread, GETting `/` — the native ceiling; (b) a bare FastHttpUser with no wait GETting
the learner's three pages with its weights; (c) the suite's learner (locustfiles/http.py) with waits
set to zero; (d) the same learner watched as a real run is: in a run folder (sar's sadc recording,
stats.json, the interval histograms) with the monitor writing to a ClickHouse server of its own. One
nginx answers every page with a 1 KB body and, like a Django course site (APPEND_SLASH), `/lampi`
with a 301 to `/lampi/`, so (b), (c) and (d) pay the same extra hop. Reported: each rate and the
ratios c/b (goal ≥ 0.95: the learner's correctness — redirects followed, a redirect to the login form
failed as a lost session — costs at most 5 % of a bare user's rate), d/c (goal ≥ 0.95: what watching
costs) and b/a (what Locust costs against a C client). The CPU each Locust process spent per request
(start-up included, best of the rounds) is printed beside its rate: it is steadier than the rate when
other work shares the machine. For (d) the CPU seconds of each process that watching adds (Locust
itself, sadc, the ClickHouse server, against that server's own during (c)) say where the cost goes.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from plumbing.locust_csv import read_locust_stats
from stack import free_port
from stack.core import poll_until, stop_pid

REPO = Path(__file__).resolve().parent.parent
LOCUST = str(Path(sys.executable).with_name("locust"))
DURATION = int(os.environ.get("BENCH_SECONDS", "15"))
USERS = int(os.environ.get("BENCH_USERS", "50"))
ROUNDS = int(os.environ.get("BENCH_ROUNDS", "3"))


def start_nginx(home: Path) -> tuple[subprocess.Popen, str]:
    port = free_port()
    text = (REPO / "conf" / "bench" / "nginx-static.conf").read_text()
    conf = home / "nginx.conf"
    conf.write_text(text.replace("{{home}}", str(home)).replace("{{port}}", str(port)))
    nginx = shutil.which("nginx", path="/usr/sbin:/usr/bin") or "nginx"
    proc = subprocess.Popen([nginx, "-c", str(conf), "-p", str(home), "-g", "daemon off;"], start_new_session=True)
    url = f"http://127.0.0.1:{port}"

    def up() -> bool:
        import urllib.request

        with urllib.request.urlopen(url + "/", timeout=1) as r:
            return r.status == 200

    poll_until(up, timeout=20, what="bench nginx")
    return proc, url


def wrk_rate(url: str) -> float:
    out = subprocess.run(["wrk", "-t1", f"-c{USERS}", f"-d{DURATION}s", url + "/"],
                         capture_output=True, text=True, check=True).stdout
    return float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))


def locust_rate(locustfile: Path, url: str, out: Path, *extra: str) -> tuple[float, float]:
    """Requests/s of one Locust process, and the CPU it spent per request (µs, start-up included)."""
    prefix = out / locustfile.stem
    cmd = [LOCUST, "-f", str(locustfile), "--headless", "--host", url, "-u", str(USERS), "-r", str(USERS),
           "-t", f"{DURATION + 2}s", "--csv", str(prefix), "--only-summary", "--loglevel", "WARNING", *extra]
    proc = subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    _, _, usage = os.wait4(proc.pid, 0)
    # Rate over the whole run includes the 1 s ramp; the +2 s run time keeps it comparable to wrk's.
    agg = read_locust_stats(prefix)["Aggregated"]
    cpu_us = (usage.ru_utime + usage.ru_stime) * 1e6 / max(1, int(agg["Request Count"]))
    return float(agg["Requests/s"]), cpu_us


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds a live process has used (all its threads)."""
    import psutil

    t = psutil.Process(pid).cpu_times()
    return t.user + t.system


def start_clickhouse(home: Path):
    """A ClickHouse server of the bench's own (free ports) for (d)'s sink; (stack, url, server pid)."""
    from stack import Stack

    stack = Stack(home / "stack", free_ports=True)
    url = stack.start("clickhouse")["clickhouse"].url
    state = json.loads((home / "stack" / "stack.json").read_text())
    return stack, url, state["services"]["clickhouse"]["pids"][0]


def watched_rate(url: str, out: Path, ch_url: str, ch_pid: int, *extra: str) -> tuple[float, float, dict]:
    """(d): requests/s, Locust's own CPU µs per request, and CPU seconds per process (locust, sadc, clickhouse)."""
    import psutil

    run_dir = Path(tempfile.mkdtemp(prefix="watched-", dir=out))
    prefix = run_dir / "locust"
    cmd = [LOCUST, "-f", str(REPO / "locustfiles" / "http.py"), "--headless", "--host", url, "-u", str(USERS),
           "-r", str(USERS), "-t", f"{DURATION + 2}s", "--csv", str(prefix), "--only-summary", "--loglevel",
           "WARNING", "--clickhouse-url", ch_url, "--spill-dir", str(run_dir / "spill"), *extra]
    env = {**os.environ, "LOCUST_RESULTS_DIR": str(run_dir)}
    ch0 = cpu_seconds(ch_pid)
    proc = subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
    children: dict[int, float] = {}  # sadc: its last reading before Locust stops and reaps it
    while True:
        pid, _, usage = os.wait4(proc.pid, os.WNOHANG)
        if pid:
            break
        try:
            for child in psutil.Process(proc.pid).children(recursive=True):
                children[child.pid] = cpu_seconds(child.pid)
        except psutil.NoSuchProcess:
            pass
        time.sleep(0.2)
    proc.returncode = 0
    agg = read_locust_stats(prefix)["Aggregated"]
    n = max(1, int(agg["Request Count"]))
    sadc = sum(children.values())
    # wait4 counts the children Locust reaped (sadc) with Locust itself.
    own = usage.ru_utime + usage.ru_stime - sadc
    cpu = {"locust": own, "sadc": sadc, "clickhouse": cpu_seconds(ch_pid) - ch0, "requests": n}
    return float(agg["Requests/s"]), own * 1e6 / n, cpu


def main() -> int:
    if not shutil.which("wrk"):
        print("error: wrk is not installed (make setup installs it)", file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory(prefix="bench-http-") as tmp:
        home = Path(tmp)
        nginx, url = start_nginx(home)
        stack, ch_url, ch_pid = start_clickhouse(home)
        ch_idle: list[float] = []  # the ClickHouse server's CPU seconds during each (c): its cost unwatched
        watched: list[dict] = []
        try:
            t0 = time.monotonic()
            a = wrk_rate(url)
            # Alternate (b) and (c) and keep each one's best, so a burst of other load on the
            # machine does not decide the ratio.
            learner = ("--wait-min", "0", "--wait-max", "0", "--fake-users", "10000")
            runs: dict[str, list[tuple[float, float]]] = {"b": [], "c": [], "d": []}
            for _ in range(ROUNDS):
                runs["b"].append(locust_rate(REPO / "bench" / "locustfiles" / "bare_http.py", url, home))
                ch0 = cpu_seconds(ch_pid)
                runs["c"].append(locust_rate(REPO / "locustfiles" / "http.py", url, home, *learner, "--no-monitor",
                                             "--no-sar"))
                ch_idle.append(cpu_seconds(ch_pid) - ch0)
                # The same watched: monitor + ClickHouse sink + sar capture (sadc and the server share the cores).
                rate, cpu_us, cpu = watched_rate(url, home, ch_url, ch_pid, *learner)
                runs["d"].append((rate, cpu_us))
                watched.append(cpu)
            (b, cpu_b), (c, cpu_c), (d, cpu_d) = (
                (max(r for r, _ in runs[k]), min(u for _, u in runs[k])) for k in ("b", "c", "d"))
        finally:
            stop_pid(nginx.pid)
            stack.stop()
    print(f"HTTP generators, 1 process each, {USERS} connections/users, {DURATION} s, 1 KB responses "
          f"from one nginx worker, best of {ROUNDS} ({os.cpu_count()} cores, {time.monotonic() - t0:.0f} s)")
    print(f"{'generator':<42}{'req/s':>10}{'CPU µs/req':>12}")
    print(f"{'(a) wrk -t1':<42}{a:>10.0f}")
    print(f"{'(b) bare FastHttpUser, same pages':<42}{b:>10.0f}{cpu_b:>12.1f}")
    print(f"{'(c) learner, waits 0 (locustfiles/http.py)':<42}{c:>10.0f}{cpu_c:>12.1f}")
    print(f"{'(d) learner + monitor + sar capture':<42}{d:>10.0f}{cpu_d:>12.1f}")
    print(f"ratio c/b = {c / b:.2f}  (goal >= 0.95: the learner's checks cost at most 5 %; "
          f"CPU per request b/c = {cpu_b / cpu_c:.2f})")
    print(f"ratio d/c = {d / c:.2f}  (goal >= 0.95: what watching the run costs the generator; "
          f"CPU per request c/d = {cpu_c / cpu_d:.2f})")
    print("(d) CPU seconds per round (noisy when other work shares the machine): "
          "locust own / sadc / ClickHouse server (during (c): idle)")
    for cpu, idle, (_, c_us) in zip(watched, ch_idle, runs["c"], strict=True):
        extra = cpu["locust"] - c_us * cpu["requests"] / 1e6  # Locust's CPU beyond (c)'s per-request cost
        print(f"  {cpu['locust']:6.2f} s / {cpu['sadc']:5.2f} s / {cpu['clickhouse']:5.2f} s ({idle:5.2f} s)"
              f"  {cpu['requests']:>7} requests; Locust beyond (c)'s cost per request: {extra:+.2f} s")
    print(f"ratio b/a = {b / a:.2f}  (Locust's FastHttpUser against a C client)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
