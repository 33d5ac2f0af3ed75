"""HTTP generator benchmark: requests/s per generator process against one nginx static server.

(a) wrk, one thread — the native ceiling; (b) a bare FastHttpUser GETting `/` with no wait;
(c) the suite's learner (locustfiles/http.py) with waits set to zero, its login and three pages
answered by the same nginx with 1 KB bodies, and (d) the same learner with the monitor and sar on. Reported: each rate and the ratios c/b (goal ≥ 1.0:
the suite adds no overhead to Locust) and b/a (what Locust costs against a C client).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from stack import free_port
from stack.core import poll_until, stop_pid
from tests.helpers import read_locust_stats

REPO = Path(__file__).resolve().parent.parent
LOCUST = str(Path(sys.executable).with_name("locust"))
DURATION = int(os.environ.get("BENCH_SECONDS", "15"))
USERS = int(os.environ.get("BENCH_USERS", "50"))
ROUNDS = int(os.environ.get("BENCH_ROUNDS", "2"))


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


def locust_rate(locustfile: Path, url: str, out: Path, *extra: str) -> float:
    prefix = out / locustfile.stem
    cmd = [LOCUST, "-f", str(locustfile), "--headless", "--host", url, "-u", str(USERS), "-r", str(USERS),
           "-t", f"{DURATION + 2}s", "--csv", str(prefix), "--only-summary", "--loglevel", "WARNING", *extra]
    subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=DURATION + 120)
    # Rate over the whole run includes the 1 s ramp; the +2 s run time keeps it comparable to wrk's.
    agg = read_locust_stats(prefix)["Aggregated"]
    return float(agg["Requests/s"])


def main() -> int:
    if not shutil.which("wrk"):
        print("error: wrk is not installed (make setup installs it)", file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory(prefix="bench-http-") as tmp:
        home = Path(tmp)
        nginx, url = start_nginx(home)
        try:
            t0 = time.monotonic()
            a = wrk_rate(url)
            # Alternate (b) and (c) and keep each one's best, so a burst of other load on the
            # machine does not decide the ratio.
            b = c = d = 0.0
            learner = ("--wait-min", "0", "--wait-max", "0", "--fake-users", "10000")
            for _ in range(ROUNDS):
                b = max(b, locust_rate(REPO / "bench" / "locustfiles" / "bare_http.py", url, home))
                c = max(c, locust_rate(REPO / "locustfiles" / "http.py", url, home, *learner, "--no-monitor",
                                       "--no-sar"))
                # The same with the host monitor and sar capture on (sadc shares the cores).
                d = max(d, locust_rate(REPO / "locustfiles" / "http.py", url, home, *learner))
        finally:
            stop_pid(nginx.pid)
    print(f"HTTP generators, 1 process each, {USERS} connections/users, {DURATION} s, 1 KB responses "
          f"from one nginx worker, best of {ROUNDS} ({os.cpu_count()} cores, {time.monotonic() - t0:.0f} s)")
    print(f"{'generator':<42}{'req/s':>10}")
    print(f"{'(a) wrk -t1':<42}{a:>10.0f}")
    print(f"{'(b) bare FastHttpUser':<42}{b:>10.0f}")
    print(f"{'(c) learner, waits 0 (locustfiles/http.py)':<42}{c:>10.0f}")
    print(f"{'(d) learner + monitor + sar capture':<42}{d:>10.0f}")
    print(f"ratio c/b = {c / b:.2f}  (goal >= 1.00: the learner adds no overhead)")
    print(f"ratio d/c = {d / c:.2f}  (what watching the run costs the generator)")
    print(f"ratio b/a = {b / a:.2f}  (Locust's FastHttpUser against a C client)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
