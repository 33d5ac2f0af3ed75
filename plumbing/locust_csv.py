"""Locust's CSV output read back: the stats and failures rows of a `--csv` prefix."""

from __future__ import annotations

from pathlib import Path


def read_locust_stats(csv_prefix: Path) -> dict[str, dict[str, str]]:
    """Rows of Locust's `<prefix>_stats.csv` keyed by request name ("Aggregated" included)."""
    import csv

    with open(f"{csv_prefix}_stats.csv", newline="") as f:
        return {row["Name"]: row for row in csv.DictReader(f)}


def read_locust_failures(csv_prefix: Path) -> list[dict[str, str]]:
    """Rows of Locust's `<prefix>_failures.csv` (Method, Name, Error, Occurrences)."""
    import csv

    with open(f"{csv_prefix}_failures.csv", newline="") as f:
        return list(csv.DictReader(f))
