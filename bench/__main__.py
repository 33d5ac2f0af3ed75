"""`python -m bench [NAME ...]`: run every benchmark module in bench/ (or the named ones).

Each module `bench/<name>.py` has `main() -> int` and prints its own table. Benchmarks are
not tests: they measure, print ratios against native tools run in the same process tree,
and fail only when they cannot run.
"""

from __future__ import annotations

import importlib
import sys
import time
from pathlib import Path

# Run only when named (`make bench BENCH=soak`): the soak lasts 30 minutes by default.
ON_REQUEST = {"soak"}


def available() -> list[str]:
    here = Path(__file__).parent
    return sorted(p.stem for p in here.glob("*.py") if not p.stem.startswith("_"))


def main(argv: list[str]) -> int:
    names = argv or [n for n in available() if n not in ON_REQUEST]
    unknown = [n for n in names if n not in available()]
    if unknown:
        print(f"error: unknown benchmark {unknown[0]!r}; expected one of: {', '.join(available())}", file=sys.stderr)
        return 2
    worst = 0
    for name in names:
        print(f"\n=== bench {name} ===", flush=True)
        t0 = time.monotonic()
        code = importlib.import_module(f"bench.{name}").main() or 0
        print(f"=== bench {name}: {time.monotonic() - t0:.0f} s, exit {code} ===", flush=True)
        worst = max(worst, code)
    return worst


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
