"""Keys of a Locust request event's `context` that one module sets and another reads."""

from __future__ import annotations

# An open-model iteration's planned instant (epoch seconds, time.time()): set by the senders and
# generators.open_model, read by monitors.planned for latency from the planned start.
PLANNED_START = "planned_start"
