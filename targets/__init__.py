"""Reference systems under test, so the suite runs end to end on one machine."""
