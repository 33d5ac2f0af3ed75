"""Turning monitor samples into typed rows and into the one console line logged per sample."""

from __future__ import annotations

from collections.abc import Iterator

import backends


def flatten(sample, prefix: str = "") -> Iterator[tuple[str, float]]:
    """(metric path, value) for every numeric leaf; list items are keyed by their partition/name."""
    if isinstance(sample, dict):
        for key, value in sample.items():
            yield from flatten(value, f"{prefix}.{key}" if prefix else str(key))
    elif isinstance(sample, (list, tuple)):
        for i, item in enumerate(sample):
            key = i
            if isinstance(item, dict):
                key = item.get("partition", item.get("name", i))
            yield from flatten(item, f"{prefix}.{key}")
    elif isinstance(sample, bool):
        yield prefix, float(sample)
    elif isinstance(sample, (int, float)):
        yield prefix, float(sample)


# The figures worth a glance every sample, per source; each backend declares its own (KEY_FIGURES in
# backends/<name>.py). A source without an entry shows its first four figures (console) or all (web tab).
KEY_FIGURES = {
    "clickhouse": ("total_rows", "lag_seconds", "max_parts_per_partition", "delayed_inserts_now"),
    **{name: backends.get(name).KEY_FIGURES for name in backends.having("KEY_FIGURES")},
    "host": ("cpu_percent", "load1"),
}


def console_line(run_id: str, stats: dict, backlog: int | None, draining: bool) -> str:
    parts = []
    for source, sample in stats.items():
        if not isinstance(sample, dict):
            continue
        if "error" in sample:
            parts.append(f"{source}: {sample['error']}")
            continue
        keys = KEY_FIGURES.get(source) or [k for k, v in sample.items() if isinstance(v, (int, float))][:4]
        figures = " ".join(f"{k}={'unknown' if sample[k] is None else sample[k]}" for k in keys if k in sample)
        parts.append(f"{source}: {figures}")
    state = "" if backlog is None else f" | backlog {'unknown' if backlog < 0 else backlog}"
    return f"monitor {run_id}{' (draining)' if draining else ''}: " + " | ".join(parts) + state


def error_text(exc: BaseException) -> str:
    """One line naming what failed, e.g. `ServerException: Code: 81. DB::Exception: Database xapi doesn't exist`."""
    from plumbing.redaction import redact_text

    text = " ".join(str(exc).split()).split(" Stack trace:")[0]  # ClickHouse appends its C++ stack
    return redact_text(f"{type(exc).__name__}: {text}")[:300]
