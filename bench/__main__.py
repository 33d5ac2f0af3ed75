"""`python -m bench [NAME ...]`: run every benchmark module in bench/ (or the named ones).

Each module `bench/<name>.py` has `main() -> int` and prints its own table. Benchmarks are
not tests: they measure, print ratios against native tools run in the same process tree,
and fail only when they cannot run.
"""

from __future__ import annotations

import argparse
import ast
import importlib
import sys
import time
from pathlib import Path

# Run only when named (`make bench BENCH=soak`): the soak lasts 30 minutes by default, the capacity
# table 6–9 minutes a configuration (14 of them), the steady cost and the Kafka lag's error a few minutes.
ON_REQUEST = {"soak", "capacity_table", "steady_cost", "kafka_lag"}


def available() -> list[str]:
    here = Path(__file__).parent
    return sorted(p.stem for p in here.glob("*.py") if not p.stem.startswith("_"))


def summary(name: str) -> str:
    """The first line of a benchmark's docstring (read, not imported: importing runs its imports)."""
    doc = ast.get_docstring(ast.parse((Path(__file__).parent / f"{name}.py").read_text())) or ""
    return doc.strip().splitlines()[0] if doc.strip() else ""


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="benchmarks:\n" + "\n".join(f"  {n:10} {summary(n)}" + (" (only when named)" if n in ON_REQUEST else "")
                                           for n in available()))
    parser.add_argument("names", nargs="*", metavar="NAME", help="benchmarks to run (default: all but the soak)")
    names = parser.parse_args(argv).names or [n for n in available() if n not in ON_REQUEST]
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
