"""``python3 -m stack.packages [GROUP …]``: install the Debian packages the suite needs, only what is missing.

Idempotent: a package whose program is found is not installed again, so nothing runs apt when all
are there. It runs with the system's python3 before any venv exists (standard library only), as
root or through sudo. Groups (default ``stack``):

    stack    the servers of the local stack and the native tools the benchmarks compare with
    browser  headless Chromium and its driver (only the test of the web UI in a browser needs them)
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys

# Debian package -> a program it installs (how we know it is there).
PACKAGES: dict[str, dict[str, str]] = {
    "stack": {"clickhouse-server": "clickhouse-server", "clickhouse-client": "clickhouse-client",
              "redis-server": "redis-server", "mosquitto": "mosquitto", "mosquitto-clients": "mosquitto_pub",
              "nginx-light": "nginx", "sysstat": "sar", "wrk": "wrk", "kcat": "kcat", "iproute2": "ip",
              "faketime": "faketime"},
    "browser": {"chromium": "chromium", "chromium-driver": "chromedriver"},
}


def installed(program: str) -> bool:
    """On the PATH, or in /usr/sbin or /usr/bin (a PATH without sbin: a plain user's)."""
    return shutil.which(program) is not None or any(os.access(f"{d}/{program}", os.X_OK)
                                                    for d in ("/usr/sbin", "/usr/bin"))


def missing(groups: list[str]) -> list[str]:
    return [package for g in groups for package, program in PACKAGES[g].items() if not installed(program)]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python3 -m stack.packages", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("groups", nargs="*", default=["stack"], metavar="GROUP",
                   help=f"one or more of {', '.join(PACKAGES)} (default %(default)s)")
    args = p.parse_args(argv)
    unknown = [g for g in args.groups if g not in PACKAGES]
    if unknown:
        print(f"error: group {unknown[0]!r}: expected one of {', '.join(PACKAGES)}", file=sys.stderr)
        return 2
    packages = missing(args.groups)
    if not packages:
        return 0
    print(f"installing Debian packages: {' '.join(packages)}")
    sudo = [] if os.geteuid() == 0 else ["sudo"]
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    steps = [[*sudo, "apt-get", "update", "-qq"],
             [*sudo, "env", "DEBIAN_FRONTEND=noninteractive", "apt-get", "install", "-y", "-qq",
              "--no-install-recommends", *packages]]
    for step in steps:
        done = subprocess.run(step, env=env, stdout=subprocess.DEVNULL)
        if done.returncode:
            print(f"error: {' '.join(step)} failed (exit {done.returncode})", file=sys.stderr)
            return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
