"""`python -m stack up|down|status|env|run`: the local stack for `make demo` and manual runs.

`python -m stack run [SERVICES] [--site-data] -- COMMAND …` starts the services, runs COMMAND with
the stack's variables (what stack.env holds) in its environment, stops the stack however COMMAND
ends and exits with COMMAND's code: the make targets' one command each."""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

from stack.core import REPO, SERVICES, Stack, StackError, stop_from_state

DEFAULT = ["clickhouse", "redis", "mosquitto", "kafka", "site"]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m stack", description=__doc__)
    parser.add_argument("command", choices=["up", "down", "status", "env", "run"])
    parser.add_argument("services", nargs="*", help=f"default: {' '.join(DEFAULT)}")
    parser.add_argument("--run-dir", type=Path, default=REPO / ".run" / "stack")
    parser.add_argument("--site-profile", choices=["baseline", "tuned"], default="baseline")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="option for a service factory (e.g. pipeline_backend=redis_bus); repeatable")
    parser.add_argument("--site-data", action="store_true",
                        help="run: create the LAMPI site's test users (manage.py loadtestingdata) first")
    argv = list(sys.argv[1:] if argv is None else argv)
    command = argv[argv.index("--") + 1:] if "--" in argv else []
    args = parser.parse_args(argv[:argv.index("--")] if "--" in argv else argv)
    if args.command == "run" and not command:
        print("stack: run needs a command after --", file=sys.stderr)
        return 2
    options = {"site_profile": args.site_profile}
    for item in args.set:
        key, sep, value = item.partition("=")
        if not sep or not key:
            print(f"stack: --set {item!r} is not KEY=VALUE", file=sys.stderr)
            return 2
        options[key] = value
    state_file = args.run_dir / "stack.json"

    if args.command == "down":
        stopped = stop_from_state(args.run_dir)
        print(f"stopped: {' '.join(stopped) or 'nothing was running'}")
        return 0
    if args.command in ("status", "env"):
        if not state_file.exists():
            print("stack: not running (make stack-up)", file=sys.stderr)
            return 1
        state = json.loads(state_file.read_text())["services"]
        for name, info in state.items():
            e = info["endpoint"]
            if args.command == "status":
                print(f"{name:12} {e['url']:45} pids {' '.join(map(str, info['pids']))}")
        if args.command == "env":
            from stack.core import Endpoint, env_for

            eps = {n: Endpoint(**i["endpoint"]) for n, i in state.items()}
            for key, value in env_for(eps).items():
                print(f"export {key}={value}")
        return 0

    names = args.services or DEFAULT
    unknown = [n for n in names if n not in SERVICES]
    if unknown:
        print(f"stack: unknown service {unknown[0]!r}; expected one of: {', '.join(sorted(SERVICES))}", file=sys.stderr)
        return 2
    if state_file.exists():
        stop_from_state(args.run_dir)  # idempotent `up`: replace a previous stack
    stack = Stack(args.run_dir, options=options)
    try:
        stack.start(*names)
    except StackError as exc:
        print(f"stack: {exc}", file=sys.stderr)
        if args.command == "run":
            stop_from_state(args.run_dir)
        return 1
    for name, e in stack.endpoints.items():
        print(f"{name:12} {e.url}")
    (args.run_dir / "stack.env").write_text("".join(f"export {k}={v}\n" for k, v in stack.env().items()))
    if args.command == "run":
        return run_in(args.run_dir, {**stack.env()}, command, args.site_profile if args.site_data else None)
    return 0


def run_in(run_dir: Path, env: dict[str, str], command: list[str], site_profile: str | None) -> int:
    """COMMAND with the stack's variables; the stack is stopped however it ends (Ctrl-C included)."""
    env = {**os.environ, **env}
    try:
        if site_profile is not None:
            site_env = {**env, "LAMPISITE_PROFILE": site_profile, "LAMPISITE_DATA_DIR": str(run_dir / "site")}
            subprocess.run([sys.executable, str(REPO / "targets" / "lampisite" / "manage.py"), "loadtestingdata"],
                           env=site_env, check=True)
        proc = subprocess.Popen(command, env=env)
        while True:
            try:
                return proc.wait()
            except KeyboardInterrupt:  # it got the Ctrl-C too (one process group): it ends as it decides
                continue
    except KeyboardInterrupt:  # while the site's users were loaded
        return 130
    except subprocess.CalledProcessError as exc:
        return exc.returncode
    finally:
        stop_from_state(run_dir)


if __name__ == "__main__":
    sys.exit(main())
