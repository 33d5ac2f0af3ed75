"""The run's owner: its exit codes, the phases of its end fired in one order, signals, checks and the
shared budget of load-generating processes. See docs/layout.md ("The run's lifecycle")."""
