"""``python -m loadtesting.streams_run``: Kafka end to end, the reference stream processor around one run.

Creates the input and output topics unless they exist, starts ``python -m targets.streams.processor``
between them (its log: ``<run-dir>/streams-processor.log``), waits until it has its partitions, runs
``python -m loadtesting.run kafka`` (the producers, and the end-to-end latency read from the output
topic), stops the processor and exits with the run's exit code. The brokers come from the
environment (KAFKA_BROKERS, as ``.run/stack/stack.env`` sets it). ``make kafka-test`` uses it;
further options go to the run (e.g. ``--users 20``).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from loadtesting.pipeline_run import REPO, run_beside, run_to_end


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m loadtesting.streams_run", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--messages", type=int, default=20_000, help="messages the producers send (default %(default)s)")
    p.add_argument("--delay-ms", type=float, default=0.0,
                   help="the processor's added delay per message, ms (default %(default)s)")
    p.add_argument("--input-topic", default="performance-test", help="default %(default)s")
    p.add_argument("--output-topic", default="performance-test-out", help="default %(default)s")
    p.add_argument("--run-dir", type=Path, default=REPO / ".run", help="the ready file and the processor's log")
    a, extra = p.parse_known_args(argv)
    if a.messages < 1:
        print(f"error: --messages {a.messages}: expected at least 1", file=sys.stderr)
        return 2
    if run_to_end([sys.executable, "-m", "targets.streams.topics", a.input_topic, a.output_topic]):
        return 1
    run_dir = a.run_dir.resolve()
    run_dir.mkdir(parents=True, exist_ok=True)
    ready = run_dir / "streams.ready"
    processor = [sys.executable, "-m", "targets.streams.processor", "--input-topic", a.input_topic,
                 "--output-topic", a.output_topic, "--delay-ms", str(a.delay_ms), "--session-timeout-ms", "6000",
                 "--ready-file", str(ready)]
    run = [sys.executable, "-m", "loadtesting.run", "kafka", "--users", "10", "--spawn-rate", "10", "--run-time", "10m",
           "--kafka-topic", a.input_topic, "--kafka-messages", str(a.messages),
           "--kafka-latency-topic", a.output_topic, *extra]
    return run_beside(processor, ready, "the reference stream processor", run, timeout=30,
                      log=run_dir / "streams-processor.log")


if __name__ == "__main__":
    sys.exit(main())
