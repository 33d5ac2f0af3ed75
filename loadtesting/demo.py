"""``python -m loadtesting.demo``: the main job on the local stack (``make demo``).

A headless HTTP run of the LAMPI site (``python -m loadtesting.run http``), then tracking events
through the reference pipeline of one backend (``python -m loadtesting.pipeline_run``); each run's
folder is printed at its end. Run it inside the stack with the site's users loaded:
``python -m stack run --site-data -- python -m loadtesting.demo``. Exits with the first failing
run's exit code (the pipeline run does not start after a failed HTTP run).
"""

from __future__ import annotations

import argparse
import sys

from loadtesting.pipeline_run import BACKENDS, run_to_end


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m loadtesting.demo", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--users", default="100", help="HTTP run: users (default %(default)s)")
    p.add_argument("--spawn-rate", default="10", help="HTTP run: users started per second (default %(default)s)")
    p.add_argument("--run-time", default="60s", help="HTTP run: its length (default %(default)s)")
    p.add_argument("--backend", default="redis_bus", choices=BACKENDS, help="pipeline run (default %(default)s)")
    p.add_argument("--events", default="5000", help="pipeline run: tracking events (default %(default)s)")
    p.add_argument("--eps", default="500", help="pipeline run: events per second (default %(default)s)")
    a = p.parse_args(argv)
    runs = [["loadtesting.run", "http", "--users", a.users, "--spawn-rate", a.spawn_rate, "--run-time", a.run_time],
            ["loadtesting.pipeline_run", a.backend, "--events", a.events, "--eps", a.eps]]
    for run in runs:
        code = run_to_end([sys.executable, "-m", *run])
        if code:
            return code
    return 0


if __name__ == "__main__":
    sys.exit(main())
